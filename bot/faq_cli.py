"""`zikao-bot faq ...`: check, reload, try and measure the consultation knowledge base."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

from dialogs.faq import FaqError, FaqFiles, FaqIndex, format_answer, format_none, format_refer, format_suggestions
from dialogs.faq.understand import is_question
from dialogs.faq.index import DEFAULT_KB

# Where the knowledge base and jieba's cache live. Settings fields of the same name (lower case)
# win when the service's Settings has them; otherwise these environment variables; otherwise the
# packaged kb.yaml and var/jieba next to the service's other runtime files.
KB_ENV = "FAQ_KB_FILE"
CACHE_ENV = "FAQ_CACHE_DIR"


def faq_locations(settings: Any = None, env: Optional[Mapping[str, str]] = None) -> tuple[Path, str]:
    """(knowledge base file, jieba cache directory) for this service."""
    env = os.environ if env is None else env
    kb = getattr(settings, "faq_kb_file", "") or env.get(KB_ENV) or str(DEFAULT_KB)
    cache = getattr(settings, "faq_cache_dir", "") or env.get(CACHE_ENV)
    if not cache:
        media = getattr(settings, "media_dir", "") or "var/media"
        cache = str(Path(media).parent / "jieba")
    return Path(kb), cache


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `faq check|reload|ask|eval` to the zikao-bot command."""
    faq = subparsers.add_parser("faq", help="consultation knowledge base: check, reload, ask, eval (docs/faq.md)")
    fsub = faq.add_subparsers(dest="faq_command", required=True)
    check = fsub.add_parser("check", help="validate a knowledge base file (default: the service's)")
    check.add_argument("file", nargs="?", help="the YAML file to check")
    reload = fsub.add_parser("reload", help="validate the service's knowledge base, then make running services load it")
    reload.add_argument("file", nargs="?", help="the YAML file the services use (default: the service's)")
    ask = fsub.add_parser("ask", help="show how a question would be answered")
    ask.add_argument("text", help="the question, as a candidate would type it")
    ask.add_argument("--file", help="knowledge base file (default: the service's)")
    ev = fsub.add_parser("eval", help="accuracy and speed on the labelled questions (bot/faq_eval.py)")
    from bot.faq_eval import add_arguments

    add_arguments(ev)
    faq.set_defaults(func=_command)
    return faq


def _command(args: argparse.Namespace) -> int:
    from bot.config import command_settings

    return run(args, command_settings(getattr(args, "config", None)))


def run(args: argparse.Namespace, settings: Any) -> int:
    kb, cache_dir = faq_locations(settings)
    command = args.faq_command
    if command == "eval":
        from bot.faq_eval import run as run_eval

        args.kb = args.kb or str(kb)
        args.cache_dir = args.cache_dir or cache_dir
        return run_eval(args)
    path = Path(getattr(args, "file", None) or kb)
    try:
        index = FaqIndex.load(FaqFiles.with_kb(path), cache_dir=cache_dir)
    except FaqError as e:
        print(f"zikao-bot faq {command}: {path} is not valid; nothing changed:", file=sys.stderr)
        for line in e.errors:
            print(f"  {line}", file=sys.stderr)
        return 1
    if command == "check":
        print(_summary(index, path))
        return 0
    if command == "reload":
        # Running services compare the files' modification times at most every few seconds and
        # reload on a change (keeping the old knowledge base if the new one is invalid). Bumping the
        # time makes them all pick up this validated version, on every process and machine that
        # reads this file, without a restart.
        os.utime(path)
        print(_summary(index, path))
        print("running services load it within a few seconds (on their next message)")
        return 0
    if command == "ask":
        m = index.match(args.text)
        print(f"[{m.kind}] tokens: {' / '.join(m.tokens) or '-'}" + (f"  course: {m.course.code} {m.course.name}"
                                                                        if m.course else ""))
        print(f"business: {'、'.join(sorted(m.businesses)) or '-'}  aspect: {'、'.join(sorted(m.aspects)) or '-'}  "
              f"{'question (answered, action offered after)' if is_question(args.text) else 'request (action runs)'}")
        if m.unknown:  # words no entry uses: a phrasing or a synonym may be missing
            print(f"words no entry uses: {' / '.join(m.unknown)}")
        for s in m.ranked[:3]:
            print(f"  {s.entry.id:28} score {s.score:6.2f}  coverage {s.coverage:.2f}  fit {s.fit:.2f}  "
                  f"second opinion {s.nb:.2f}  [{s.entry.business}/{s.entry.aspect or '-'}]")
        if m.ranked:
            sure = index.probability(m)
            print(f"out of scope (second opinion): {m.outside or 0.0:.2f}"
                  + (f"  model: {sure:.2f} (answers from {index.confidence.threshold:.2f})" if sure is not None else ""))
        if m.kind == "answer":
            print(f"action: {m.action}" if m.action else "action: -")
            print(format_answer(m.entry))
        elif m.kind == "refer":
            print(format_refer(m.entry))
        elif m.kind == "suggest":
            print(format_suggestions(m.suggestions))
        else:
            print(format_none())
        return 0
    raise AssertionError(command)


def _summary(index: FaqIndex, path: Path) -> str:
    questions = sum(len(e.questions) for e in index.entries)
    actions = sum(1 for e in index.entries if e.action)
    model = index.confidence
    if model is None:
        state = "no confidence model (the hand-written rules decide)"
    elif index.files is not None and model.stale(index.files):
        state = "warning: the confidence model was fitted on other files (it still applies; refit: python -m bench.faq_calibrate)"
    else:
        state = "confidence model fitted on these files"
    return f"{path}: ok, {len(index)} entries, {questions} questions, {actions} with an action; {state}"
