"""Maps the config's retention in days onto CDK's ``RetentionDays`` (a jsii enum of names, not numbers)."""

from aws_cdk import aws_logs as logs

from config.model import LOG_RETENTION_DAYS

# RetentionDays lists the same periods as CloudWatch Logs, shortest first, then INFINITE.
_BY_DAYS = dict(
    zip(LOG_RETENTION_DAYS, [m for m in logs.RetentionDays if m is not logs.RetentionDays.INFINITE], strict=True)
)


def retention(days: int) -> logs.RetentionDays:
    return _BY_DAYS[days]
