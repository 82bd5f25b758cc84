"""``python -m gbs_core.zoo``: the same commands as ``python -m gbs_core zoo`` (``train``, ``list``)."""

from gbs_core.cli import zoo

if __name__ == "__main__":
    zoo(prog_name="python -m gbs_core.zoo")
