"""Lambda code for the compute-quota custom resource: plain boto3, no CDK.

Packaged as the top-level package ``compute_quota_runtime`` by ``constructs/hyperpod_cluster/asset.py``. ``aws.py`` and
``jsonlog.py`` are symlinks to the HyperPod cluster runtime's modules, so both custom resources share
one retry policy and one error classification (the asset copies the files they point to).
"""
