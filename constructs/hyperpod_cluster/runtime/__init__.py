"""Lambda code for the HyperPod cluster custom resource: plain boto3, no CDK.

Packaged into the Lambda asset as the top-level package ``hyperpod_cluster_runtime`` (see ``asset.py``);
modules import each other relatively so the same files run under both names.
"""
