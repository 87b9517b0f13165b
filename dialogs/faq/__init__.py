"""Consultation: candidates' questions answered from a knowledge base (jieba + BM25), see docs/faq.md."""
from dialogs.faq.index import (
    ACTIONS, ANSWER, NONE, REFER, SUGGEST, Course, Entry, FaqError, FaqFiles, FaqIndex, FaqService, Match,
    check_files,
)
from dialogs.faq.replies import format_answer, format_none, format_refer, format_suggestions

__all__ = [
    "ACTIONS", "ANSWER", "NONE", "REFER", "SUGGEST", "Course", "Entry", "FaqError", "FaqFiles", "FaqIndex",
    "FaqService", "Match", "check_files", "format_answer", "format_none", "format_refer", "format_suggestions",
]
