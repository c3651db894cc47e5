"""Lambda code of the FSx for Lustre construct: the final backup taken before the file system is deleted,
and the look-up of an existing file system. Standard library plus the boto3 of the Lambda runtime (FSx's
CreateBackup/DescribeBackups/DescribeFileSystems are old, stable calls), so nothing is bundled."""
