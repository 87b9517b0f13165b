"""省际转考: 外省转入 records (the office's, with their progress and 现场确认) and the rules of 本市转出.

- `common`: provinces, the check of another province's 准考证号;
- `inbound` (外省转入): status transitions, the 现场确认 reminder's time, records for the
  candidate and the staff, status changes with their pushes, 已完成 courses credited as 转入;
- `outbound` (本市转出): the form, which results may leave (rules the office sets), submission
  problems, the 转出编号.

Plain rules are functions over plain values, tested without a database; the import, the staff
command, the scheduler and the dialogs use the database operations next to them.
"""
from storage.transfers.common import *  # noqa: F401,F403
from storage.transfers.common import __all__ as _common
from storage.transfers.inbound import *  # noqa: F401,F403
from storage.transfers.inbound import __all__ as _inbound
from storage.transfers.outbound import *  # noqa: F401,F403
from storage.transfers.outbound import __all__ as _outbound

__all__ = [*_common, *_inbound, *_outbound]
