"""QA's command (docs/QA.md), from a source checkout: the same as `bodycam-flash`.

python tools/flash.py agency-init | TARGET | image | check | inventory ...
"""

import sys

from boot.flash import main

sys.exit(main())
