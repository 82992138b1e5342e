"""`python -m controller.settings`: the controller's settings table of docs/settings.md."""

import sys

from controller.settings import ControllerSettings
from shared.settings import table

sys.stdout.write(table(ControllerSettings) + "\n")
