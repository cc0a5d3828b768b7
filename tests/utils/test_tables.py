"""utils.tables.markdown: text from a user's file cannot break a table's rows or columns."""

from utils.tables import markdown


def columns(line: str) -> list[str]:
    """A markdown row's cells, splitting on unescaped pipes only."""
    cells, current, escaped = [], "", False
    for char in line.strip()[1:-1]:
        if char == "|" and not escaped:
            cells.append(current.strip())
            current = ""
        else:
            current += char
        escaped = char == "\\"
    return [*cells, current.strip()]


def test_a_pipe_or_a_line_break_in_a_cell_stays_inside_that_cell():
    text = markdown(["site | name", "PSNR"], [["a|b", "1.0"], ["two\nlines", "2.0"], ["plain", "3.0"]])
    lines = text.splitlines()
    assert len(lines) == 5  # header, rule, three rows: no row was split by a line break
    for line in lines[:1] + lines[2:]:
        assert len(columns(line)) == 2, line
    assert columns(lines[2]) == ["a\\|b", "1.0"] and columns(lines[3]) == ["two lines", "2.0"]
    assert lines[1] == "|---|---:|"


def test_plain_cells_are_written_as_given():
    assert markdown(["a", "b"], [["x", "y"]], "ll") == "| a | b |\n|---|---|\n| x | y |\n"
