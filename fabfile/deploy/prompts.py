"""quick-update's three questions: each has a flag; with no terminal a missing answer is an error.

`resolve` is pure: the flags, whether a terminal can be asked, and an `ask`
function (input() in the task, a stub in tests).  --yes takes the default of
every question no flag answered.  Without a terminal and without --yes, a
question no flag answered raises AnswerMissing naming its flag: never a hang.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import AnswerMissing

COMPONENTS = ("web", "workers", "all")
DEFAULT_COMPONENT = "all"

Ask = Callable[[str], str]


@dataclass(frozen=True)
class Answers:
    component: str
    deps: bool
    upgrade_django: bool


def check_component(component: str) -> str:
    if component not in COMPONENTS:
        raise AnswerMissing(f"--component: unknown component {component!r} (expected one of: {', '.join(COMPONENTS)})")
    return component


def _missing(question: str, flags: str) -> AnswerMissing:
    return AnswerMissing(f"quick-update: no terminal to ask {question!r}; pass {flags} "
                         f"(or --yes to take the defaults)")


def _ask_choice(ask: Ask, question: str, choices: tuple[str, ...], default: str) -> str:
    while True:
        answer = ask(f"{question} [{'/'.join(choices)}] ({default}): ").strip().lower()
        if not answer:
            return default
        if answer in choices:
            return answer
        print(f"  please answer one of: {', '.join(choices)}")


def _ask_yes_no(ask: Ask, question: str, default: bool) -> bool:
    while True:
        answer = ask(f"{question} [{'Y/n' if default else 'y/N'}]: ").strip().lower()
        if not answer:
            return default
        if answer in ("y", "yes"):
            return True
        if answer in ("n", "no"):
            return False
        print("  please answer y or n")


def resolve(*, component: str | None, deps: bool | None, upgrade_django: bool | None, yes: bool,
            interactive: bool, ask: Ask, deps_default: bool, deps_why: str, django_spec: str | None,
            django_installed: str | None = None) -> Answers:
    """The answers to: which component, reinstall dependencies, upgrade Django.

    `deps_default`/`deps_why`: whether the requirements changed since the current release, and
    why (the question says it).  `django_spec`: the requirements' Django line (None: no Django).
    """
    if component is not None:
        check_component(component)
    elif yes:
        component = DEFAULT_COMPONENT
    elif interactive:
        component = _ask_choice(ask, "Update which component: web (app nodes), workers (celery) or all?",
                                COMPONENTS, DEFAULT_COMPONENT)
    else:
        raise _missing("which component (web, workers, all)?", "--component web|workers|all")

    if deps is None:
        if yes:
            deps = deps_default
        elif interactive:
            deps = _ask_yes_no(ask, f"Reinstall dependencies? ({deps_why})", deps_default)
        else:
            raise _missing(f"reinstall dependencies? ({deps_why})", "--deps or --no-deps")

    if upgrade_django is None:
        if yes or django_spec is None:
            upgrade_django = False
        elif interactive:
            have = f", installed: {django_installed}" if django_installed else ""
            upgrade_django = _ask_yes_no(ask, f"Upgrade Django within {django_spec!r}{have}?", False)
        else:
            raise _missing(f"upgrade Django within {django_spec!r}?", "--upgrade-django or --no-upgrade-django")
    return Answers(component, deps, upgrade_django)
