"""Local rehearsal of a deployment: the synthesized templates are played against moto_server, the
HyperPod custom resource's real handler code runs from its ``cdk.out`` asset the way the Provider
framework calls it, and the real post-deploy CLI runs against moto and the Kubernetes API double.

Modules: ``assembly`` (reads ``cdk.out``), ``intrinsics`` (resolves Ref/GetAtt/ImportValue/...),
``lambdas`` (runs a Lambda asset's handler in a child interpreter), ``moto_stacks`` (creates what
the templates declare in moto, on demand), ``provider`` (the CDK Provider framework and the
poller state machine, replayed), ``eks_auth`` (the Kubernetes double behind EKS token checks),
``rehearsal`` (the step-by-step run the tests and ``python -m tests.rehearsal`` drive).
"""
