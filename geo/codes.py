"""全国地方公共団体コード (JIS X 0402) handling: the 5-digit code and its 6-digit check-digit form.

Desks and other systems quote codes both ways; a mistyped 6-digit code must be
refused rather than silently truncated, because a wrong municipality means an
alert heard by the wrong town.
"""

from __future__ import annotations

from alertd.errors import UnknownArea

_WEIGHTS = (6, 5, 4, 3, 2)


def check_digit(code5: str) -> str:
    """The JIS X 0402 check digit: 11 minus the weighted sum mod 11, last digit only."""
    total = sum(int(d) * w for d, w in zip(code5, _WEIGHTS, strict=True))
    return str((11 - total % 11) % 10)


def with_check_digit(code: str) -> str:
    """The 6-digit form of a 2- or 5-digit code ("08" -> "080004", "08211" -> "082112")."""
    code5 = code + "000" if len(code) == 2 else code
    return code5 + check_digit(code5)


def split_six(code: str) -> str:
    """Validate a 6-digit code and return its 5-digit body; raise UnknownArea on a bad check digit."""
    body, digit = code[:5], code[5]
    expected = check_digit(body)
    if digit != expected:
        raise UnknownArea(
            f"The area code {code} is not valid: its last digit (check digit) should be {expected}. "
            "Please check the code for a typing error.",
            input=code,
        )
    return body
