import sys

from post_deploy.cli import main

sys.exit(main())
