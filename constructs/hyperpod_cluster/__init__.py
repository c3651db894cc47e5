"""The SageMaker HyperPod cluster as a CDK construct (``infrastructure``) plus its Lambda code (``runtime``).

Kept import-free on purpose: the runtime package is imported by its tests without pulling in aws-cdk-lib.
"""
