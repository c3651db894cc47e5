"""preflight's bootstrap check asks for the version the synthesized templates themselves require."""

from __future__ import annotations

from post_deploy.preflight_checks import DEFAULT_QUALIFIER, MIN_BOOTSTRAP_VERSION


def test_preflight_minimum_bootstrap_version_is_what_every_template_checks(templates):
    for name, template in templates.items():
        parameter = template["Parameters"]["BootstrapVersion"]
        assert parameter["Default"] == f"/cdk-bootstrap/{DEFAULT_QUALIFIER}/version", name
        [assertion] = template["Rules"]["CheckBootstrapVersion"]["Assertions"]
        refused, _ref = assertion["Assert"]["Fn::Not"][0]["Fn::Contains"]
        assert [int(v) for v in refused] == list(range(1, MIN_BOOTSTRAP_VERSION)), name
