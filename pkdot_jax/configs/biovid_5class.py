"""Paper setup on the BioVid Heat Pain Database, five pain levels (BL1, PA1, PA2, PA3, PA4), PKDOT student.

  pkdot train --config=biovid_5class --workdir=runs/biovid_5class/fold0 \\
      --config.data.manual_dir=/path/to/biovid --config.data.fold=0
  pkdot train --config=biovid_5class:authors --workdir=runs/biovid_5class_authors/fold0 \\
      --config.data.manual_dir=/path/to/biovid
  pkdot train --config=biovid_5class:smoke --workdir=/tmp/smoke \\
      --config.data.manual_dir=/path/to/fake_biovid

Everything else (variants `authors`, `partb`, `smoke`; the corrected and the authors' protocols and what we do
not reproduce; model, optimiser and PKDOT values; where to put the data) is as in biovid_binary.py, with the
builder config "five_class" (all 5 x 20 samples per subject) and a 5-way head. Chance level is 20 %.
"""

from pkdot_jax.configs import biovid_binary


def get_config(arg: str = ""):
  return biovid_binary.biovid_config(5, arg, "biovid_5class")
