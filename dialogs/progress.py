"""毕业进度: what a candidate still lacks to graduate in a major, as plain rules over plain data.

The rules, in the words of the majors' 专业说明 and the 申请毕业 须知:
- every 必考 course passed (by exam, 补登, 免考 or 转入);
- the courses `graduation_rules["required_courses"]` names passed, whatever their category;
- credits of passed 必考 and 选考 courses at least `Major.required_credits` (选考 courses are how
  the rest is made up; 加考 credits never count, a 论文 carries none);
- where `graduation_rules["thesis"]` is true, the thesis (a course of kind 论文 in the plan) passed;
- 加考 courses depend on the candidate's prior studies (`extra_exam_options`): they are listed
  with the options, not counted as missing, since only the candidate knows which applies.

No database here: callers pass the plan and the results (storage.queries values fit the
protocols below).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Protocol


class PlanCourseLike(Protocol):
    course_code: str
    course_name: str
    course_kind: str  # 理论 / 实践 / 论文
    credits: int
    category: str  # 必考 / 选考 / 加考


class ResultLike(Protocol):
    course_code: str
    passed: bool


@dataclass(frozen=True)
class Missing:
    course_code: str
    course_name: str
    credits: int
    category: str
    attempted: bool  # has results, none passed


@dataclass(frozen=True)
class ExtraOption:
    """One 加考选项 of the major, with its courses and whether each is passed."""

    label: str
    courses: tuple[tuple[str, str, bool], ...]  # (code, name, passed)

    @property
    def done(self) -> bool:
        return all(passed for _, _, passed in self.courses)


THESIS_PASSED = "已通过"
THESIS_FAILED = "未通过"
THESIS_NOT_YET = "未取得成绩"
THESIS_NOT_IN_PLAN = "考试计划中未列出"


@dataclass(frozen=True)
class Progress:
    required_credits: int
    credits: int  # credits counted toward graduation (必考 and 选考 passed)
    missing_required: tuple[Missing, ...]  # 必考 (and rule-required) courses not passed, thesis excluded
    elective_credits_needed: int  # credits that must come from 选考 courses beyond all 必考 ones
    electives_open: tuple[Missing, ...]  # 选考 courses not passed, to choose from
    thesis_required: bool
    thesis_status: Optional[str]  # None when no thesis is required
    extra_options: tuple[ExtraOption, ...]

    @property
    def credits_needed(self) -> int:
        return max(0, self.required_credits - self.credits)

    @property
    def thesis_done(self) -> bool:
        return not self.thesis_required or self.thesis_status == THESIS_PASSED

    @property
    def complete(self) -> bool:
        """Every rule above met (the 加考 choice aside, which the candidate declares when applying)."""
        return not self.missing_required and self.credits_needed == 0 and self.thesis_done


def passed_courses(results: Iterable[ResultLike]) -> set[str]:
    return {r.course_code for r in results if r.passed}


def attempted_courses(results: Iterable[ResultLike]) -> set[str]:
    return {r.course_code for r in results}


def counts_toward_credits(course: PlanCourseLike) -> bool:
    return course.category in ("必考", "选考") and course.course_kind != "论文"


def thesis_status(plan: Iterable[PlanCourseLike], passed: set[str], attempted: set[str]) -> str:
    theses = [c for c in plan if c.course_kind == "论文"]
    if not theses:
        return THESIS_NOT_IN_PLAN
    if any(c.course_code in passed for c in theses):
        return THESIS_PASSED
    if any(c.course_code in attempted for c in theses):
        return THESIS_FAILED
    return THESIS_NOT_YET


def _missing(course: PlanCourseLike, attempted: set[str]) -> Missing:
    return Missing(course.course_code, course.course_name, course.credits, course.category,
                   course.course_code in attempted)


def extra_options(rules: Mapping[str, Any], plan: Iterable[PlanCourseLike], names: Mapping[str, str],
                  passed: set[str]) -> tuple[ExtraOption, ...]:
    in_plan = {c.course_code: c.course_name for c in plan}
    out = []
    for opt in rules.get("extra_exam_options") or ():
        codes = [str(c) for c in opt.get("courses") or ()]
        out.append(ExtraOption(str(opt.get("label", "")),
                               tuple((c, in_plan.get(c) or names.get(c, c), c in passed) for c in codes)))
    return tuple(out)


def progress(plan: Iterable[PlanCourseLike], results: Iterable[ResultLike], *, required_credits: int,
             rules: Optional[Mapping[str, Any]] = None, course_names: Optional[Mapping[str, str]] = None) -> Progress:
    """What is missing to graduate in a major with this plan, given the candidate's results."""
    plan = list(plan)
    results = list(results)
    rules = rules or {}
    passed, attempted = passed_courses(results), attempted_courses(results)
    required_codes = {str(c) for c in rules.get("required_courses") or ()}

    credits = sum(c.credits for c in plan if counts_toward_credits(c) and c.course_code in passed)
    missing = tuple(
        _missing(c, attempted) for c in plan
        if c.course_kind != "论文" and c.course_code not in passed
        and (c.category == "必考" or c.course_code in required_codes)
    )
    # Credits that the missing 必考 courses will bring; the rest has to come from 选考 courses.
    coming = sum(c.credits for c in missing if c.category in ("必考", "选考"))
    electives = tuple(
        _missing(c, attempted) for c in plan
        if c.category == "选考" and c.course_kind != "论文" and c.course_code not in passed
        and c.course_code not in required_codes
    )
    # Without a word in the rules, a 必考 论文 in the plan is what says a thesis is required.
    thesis_required = bool(rules["thesis"]) if "thesis" in rules else any(
        c.course_kind == "论文" and c.category == "必考" for c in plan)
    return Progress(
        required_credits=required_credits,
        credits=credits,
        missing_required=missing,
        elective_credits_needed=max(0, required_credits - credits - coming),
        electives_open=electives,
        thesis_required=thesis_required,
        thesis_status=thesis_status(plan, passed, attempted) if thesis_required else None,
        extra_options=extra_options(rules, plan, course_names or {}, passed),
    )
