"""Deploy-time installer of the HyperPod dependency Helm chart (the Lambda code of the construct).

Standard library plus the botocore that every Lambda Python runtime ships: nothing is bundled, so
``cdk synth`` needs no Docker and no network. Handler: ``helm_chart_installer.handler.on_event``.
"""
