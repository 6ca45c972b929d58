import sys

from napari_aet.cli import main

sys.exit(main())
