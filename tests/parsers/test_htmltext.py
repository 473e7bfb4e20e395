"""html_to_text: HTML bodies as readable plain text."""

from __future__ import annotations

from ticketd.daemon.parsers.htmltext import MAX_HTML_CHARS, html_to_text


def test_hidden_elements_are_dropped() -> None:
    html = "<head><title>T</title><style>p{}</style></head><script>x()</script><template>t</template>shown"
    assert html_to_text(html) == "shown"


def test_body_ends_an_unclosed_head() -> None:
    assert html_to_text("<head><meta charset=utf-8><body>visible") == "visible"


def test_blocks_become_lines_and_paragraphs_blank_lines() -> None:
    assert html_to_text("<div>one</div><div>two</div><p>three</p>four<br>five") == "one\ntwo\n\nthree\n\nfour\nfive"


def test_entities_are_decoded_and_whitespace_collapsed() -> None:
    assert html_to_text("  a&nbsp;&amp;\n\n  b &lt;c&gt; &#8364;  ") == "a & b <c> €"


def test_links_keep_their_text() -> None:
    assert html_to_text('see <a href="https://example.com/x">the report</a>.') == "see the report."


def test_list_items_are_bulleted_and_cells_spaced() -> None:
    assert (
        html_to_text("<ul><li>a</li><li>b</li></ul><table><tr><td>1</td><td>2</td></tr></table>") == "- a\n- b\n\n1 2"
    )


def test_preformatted_text_keeps_its_spacing() -> None:
    assert html_to_text("<pre>  x = 1\n    y</pre>after") == "  x = 1\n    y\n\nafter"


def test_huge_html_is_cut() -> None:
    text = html_to_text("<p>word</p>" * (MAX_HTML_CHARS // 5))
    assert 0 < len(text) < MAX_HTML_CHARS
