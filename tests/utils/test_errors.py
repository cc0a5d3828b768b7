"""A user error is one line, whatever its message quotes."""

import pytest

from utils.errors import UserError, single_line


@pytest.mark.parametrize(
    "message, expected",
    [
        ("key a\nb: bad", "key a b: bad"),
        ("file x\r\n  in line 3\u2028end", "file x in line 3 end"),
        ("\x1b[31mred\x1b[0m \x00value\x07", "red value"),
        ("one line", "one line"),
    ],
)
def test_a_message_is_made_one_printable_line(message, expected):
    assert str(UserError(message)) == expected == single_line(message)


def test_an_error_from_a_library_keeps_its_words_on_one_line():
    try:
        import yaml

        yaml.safe_load("a: [1,\n b: }")
    except yaml.YAMLError as err:
        wrapped = UserError(f"config.yaml: not YAML ({err})")
    text = str(wrapped)
    assert "\n" not in text and "line 2" in text, text
