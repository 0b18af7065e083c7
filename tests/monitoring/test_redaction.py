from modelyard.monitoring.requestlog.redaction import Redactor

ALL = Redactor(["secrets", "email", "phone", "card"])


def test_email_phone_card_secret_are_redacted() -> None:
    text = (
        "mail bob.smith+x@example.co.uk, call +1 415-555-0132 or (030) 1234 5678, "
        "card 4111 1111 1111 1111, key sk-proj-abcdefghijklmnopqrstuvwx, Authorization: Bearer abcdefghijklmnop1234"
    )
    out = ALL.text(text)
    assert "example.co.uk" not in out and "[REDACTED:email]" in out
    assert "555-0132" not in out and "1234 5678" not in out and out.count("[REDACTED:phone]") == 2
    assert "4111" not in out and "[REDACTED:card]" in out
    assert "sk-proj" not in out and "abcdefghijklmnop1234" not in out


def test_card_needs_luhn_and_ordinary_numbers_survive() -> None:
    assert ALL.text("order 4111 1111 1111 1112 shipped") == "order 4111 1111 1111 1112 shipped"
    assert ALL.text("in 2024 we sold 350 units at 12.5%") == "in 2024 we sold 350 units at 12.5%"
    assert ALL.text("due 2026-11-29 or 29.11.2026") == "due 2026-11-29 or 29.11.2026"
    assert ALL.text("password=hunter2 ok") == "[REDACTED:secrets] ok"


def test_only_chosen_kinds_and_custom_patterns_apply() -> None:
    r = Redactor(["email"], [r"ACCT-\d+"])
    assert r.text("a@b.io ACCT-991 +1 415-555-0132") == "[REDACTED:email] [REDACTED:custom] +1 415-555-0132"


def test_nested_messages_are_walked() -> None:
    msgs = [
        {"role": "user", "content": [{"type": "text", "text": "I am x@y.com"}]},
        {"role": "user", "content": "hi"},
    ]
    assert ALL.value(msgs) == [
        {"role": "user", "content": [{"type": "text", "text": "I am [REDACTED:email]"}]},
        {"role": "user", "content": "hi"},
    ]
