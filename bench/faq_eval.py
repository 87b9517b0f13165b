"""Accuracy and speed of the consultation matcher on a labelled question set.

    .venv/bin/python -m bench.faq_eval                 # the first eval set (entry ids)
    .venv/bin/python -m bench.faq_eval --set seen      # the former held-out set, graded by facts (development now)
    .venv/bin/python -m bench.faq_eval --set heldout   # the sealed held-out set graded by facts, once installed
    .venv/bin/python -m bench.faq_eval --set dev --misses
    .venv/bin/python -m bench.faq_eval --set dev2              # one half of the dev split (dev1: the other)
    .venv/bin/python -m bench.faq_eval --set seen2 --top1      # + how often the best-ranked entry says the facts
    .venv/bin/python -m bench.faq_eval --set dev --tune   # grid search on the dev split only

Prints top-1 and top-3 accuracy, the right / not sure / wrong confident rates and time per question.
The report itself is bot/faq_eval.py (also `zikao-bot faq eval`): the service never imports bench/.
"""
from __future__ import annotations

import argparse
import sys

from bot.faq_eval import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.faq_eval", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
