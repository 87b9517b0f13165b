"""修改联系方式 as a component: an application calls it (申请免考's review, and the graduation
flows that need a current phone number) and goes on where it was when it returns the text
saying what changed — a call on the dialog stack, not a pause of the application. The steps
and the SMS re-verification are account.py's own (`account.CONTACT`)."""
from __future__ import annotations

from dialogs import account
from dialogs.engine import Component

CONTACT_UPDATE = Component("contact_update", account.CONTACT.title, list(account.CONTACT.steps), confirm=True,
                           submit=account.CONTACT.submit)


def _only(which: str):
    """Start the contact update at one field (the application asked about that one)."""
    def enter(ctx, args):
        ctx.answers["which"] = which
        return None, which
    return enter


# The mobile alone (申请学位's 手机号码): the new number, its SMS code, 确认; then back to the caller.
MOBILE_UPDATE = Component("mobile_update", "修改手机号码", list(account.CONTACT.steps), confirm=True,
                          submit=account.CONTACT.submit, enter=_only("mobile"))
