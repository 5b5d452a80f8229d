"""Column headers of the reconciliation downloads, in Chinese (the default) and English."""

from __future__ import annotations

LINE_HEADERS = {
    "zh": ["行号", "来源", "日期", "参考号", "金额(分)", "手续费(分)", "币种", "摘要", "外部编号", "类型", "状态",
           "匹配规则", "我方项目(应有金额,分)", "差额(分)", "处理方式", "处理状态", "说明", "调整金额(分)", "处理编号"],
    "en": ["Line", "Origin", "Date", "Reference", "Amount (fen)", "Fee (fen)", "Currency", "Description",
           "External ID", "Type", "State", "Rule", "Our items (expected amount, fen)", "Difference (fen)",
           "Resolution", "Resolution status", "Note", "Adjustment (fen)", "Resolution ID"],
}
REPORT_HEADERS = {
    "zh": ["账户", "日期", "币种", "期初余额(分)", "流入(分)", "流出(分)", "期末余额(分)", "对账单流入(分)",
           "对账单流出(分)", "对账单净额(分)", "差额(分)", "对账单编号"],
    "en": ["Account", "Date", "Currency", "Opening (fen)", "In (fen)", "Out (fen)", "Closing (fen)",
           "Statement in (fen)", "Statement out (fen)", "Statement net (fen)", "Difference (fen)",
           "Reconciliation"],
}


def line_headers(lang: str) -> list[str]:
    """The lines' column headers in `lang` (zh or en)."""
    return LINE_HEADERS.get(lang, LINE_HEADERS["zh"])


def report_headers(lang: str) -> list[str]:
    """The daily report's column headers in `lang` (zh or en)."""
    return REPORT_HEADERS.get(lang, REPORT_HEADERS["zh"])
