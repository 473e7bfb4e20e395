"""parse_message: what must hold of the ParsedMessage for each kind of input."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from ticketd.daemon.parsers import Address, ParsedMessage, UnreadableMessage, parse_message

Build = Callable[[str], bytes]


def only_attachment(parsed: ParsedMessage) -> tuple[str, str, bytes]:
    assert len(parsed.attachments) == 1, parsed.attachments
    found = parsed.attachments[0]
    return found.filename, found.content_type, found.content


# --- headers ---------------------------------------------------------------------------


def test_addresses_are_decoded_with_names(mail: Build) -> None:
    parsed = parse_message(
        mail(
            """
            From: =?ISO-8859-1?Q?J=FCrgen_Schm=FCrgen?= <juergen@example.com>
            To: "Doe, John" <john@example.com>, =?utf-8?q?M=C3=BCller=2C_Anna?= <anna@example.com>
            Cc: plain@example.com
            Reply-To: Support <support@example.com>

            hi
            """
        )
    )
    assert parsed.from_ == Address("Jürgen Schmürgen", "juergen@example.com")
    assert parsed.to == (Address("Doe, John", "john@example.com"), Address("Müller, Anna", "anna@example.com"))
    assert parsed.cc == (Address("", "plain@example.com"),)
    assert parsed.reply_to == (Address("Support", "support@example.com"),)


def test_subject_is_decoded_charset_converted_and_unfolded(mail: Build) -> None:
    parsed = parse_message(
        mail(
            """
            Subject: =?iso-8859-15?q?Preis_in_=A4?=
             =?utf-8?b?w6TDtsO8?= and
             more

            x
            """
        )
    )
    assert parsed.subject == "Preis in €äöü and more"


def test_multibyte_character_split_across_encoded_words_is_joined(mail: Build) -> None:
    word = "日本語".encode()
    first, second = base64.b64encode(word[:4]).decode(), base64.b64encode(word[4:]).decode()
    parsed = parse_message(mail(f"Subject: =?UTF-8?B?{first}?= =?UTF-8?B?{second}?=\n\nx\n"))
    assert parsed.subject == "日本語"


def test_raw_8bit_header_bytes_are_decoded(mail: Build) -> None:
    raw = mail("From: Jörg <j@example.com>\nSubject: Grüße\n\nx\n")
    latin1 = raw.replace("ö".encode(), b"\xf6").replace("ü".encode(), b"\xfc").replace("ß".encode(), b"\xdf")
    assert parse_message(raw).subject == "Grüße"
    assert parse_message(latin1).subject == "Grüße"
    assert parse_message(latin1).from_ == Address("Jörg", "j@example.com")


def test_date_is_aware_in_the_senders_offset(mail: Build) -> None:
    parsed = parse_message(mail("Date: Tue, 5 Mar 2024 09:15:00 +0545\n\nx\n"))
    assert parsed.date is not None
    assert parsed.date.utcoffset() == timedelta(hours=5, minutes=45)
    assert (parsed.date.hour, parsed.date.minute) == (9, 15)


def test_unparseable_date_is_none(mail: Build) -> None:
    assert parse_message(mail("Date: sometime last week\n\nx\n")).date is None
    assert parse_message(mail("Subject: no date\n\nx\n")).date is None


def test_message_ids_keep_their_angle_brackets(mail: Build) -> None:
    parsed = parse_message(
        mail(
            """
            Message-ID: <abc@example.com>
            In-Reply-To: <parent@example.com> (John's message of Monday)
            References: <root@example.com>
              <parent@example.com>

            x
            """
        )
    )
    assert parsed.message_id == "<abc@example.com>"
    assert parsed.in_reply_to == ("<parent@example.com>",)
    assert parsed.references == ("<root@example.com>", "<parent@example.com>")


def test_missing_message_id_is_empty(mail: Build) -> None:
    parsed = parse_message(mail("Subject: x\n\nx\n"))
    assert (parsed.message_id, parsed.in_reply_to, parsed.references) == ("", (), ())


def test_all_headers_are_kept_decoded_in_order(mail: Build) -> None:
    parsed = parse_message(mail("Subject: =?utf-8?q?caf=C3=A9?=\nX-Custom: one\nx-custom: two\n\nx\n"))
    assert parsed.headers == (("Subject", "café"), ("X-Custom", "one"), ("x-custom", "two"))
    assert parsed.header("X-CUSTOM") == "one"


def test_first_usable_from_wins(mail: Build) -> None:
    parsed = parse_message(mail("From: [??????]\nFrom: Real Sender <real@example.com>\n\nx\n"))
    assert parsed.from_ == Address("Real Sender", "real@example.com")


def test_from_without_address_keeps_the_name(mail: Build) -> None:
    parsed = parse_message(mail('From: "=?utf-8?b?5oiR?=" <>\nReply-To: <me@example.com>\n\nx\n'))
    assert parsed.from_ == Address("我", "")
    assert parsed.reply_to == (Address("", "me@example.com"),)


def test_header_lines_folded_without_indentation_are_repaired(mail: Build) -> None:
    parsed = parse_message(
        mail(
            """
            Received: from a.example.com
            by b.example.com with ESMTP
            Subject: still a header
            From: sender@example.com

            body
            """
        )
    )
    assert parsed.subject == "still a header"
    assert parsed.text == "body"
    assert any("indentation" in defect for defect in parsed.defects)


def test_mbox_from_line_is_not_part_of_the_message(mail: Build) -> None:
    parsed = parse_message(b"From sender@example.com Mon Jan  1 00:00:00 2024\n" + mail("Subject: hi\n\nbody\n"))
    assert parsed.subject == "hi"


# --- bodies -----------------------------------------------------------------------------


def test_alternative_gives_text_from_plain_and_html_from_html(mail: Build) -> None:
    parsed = parse_message(
        mail(
            """
            Content-Type: multipart/alternative; boundary=b

            --b
            Content-Type: text/plain; charset=utf-8

            Plain version
            --b
            Content-Type: text/html; charset=utf-8

            <p>HTML version</p>
            --b--
            """
        )
    )
    assert parsed.text == "Plain version"
    assert parsed.html == "<p>HTML version</p>"
    assert parsed.attachments == ()


def test_html_only_mail_becomes_readable_text(mail: Build) -> None:
    parsed = parse_message(
        mail(
            """
            Content-Type: text/html; charset=utf-8

            <html><head><title>T</title><style>p {color: red}</style></head>
            <body><script>alert(1)</script><p>Hello&nbsp;<b>World</b> &amp; co</p>
            <div>line one<br>line   two</div><a href="https://example.com">the link</a></body></html>
            """
        )
    )
    assert parsed.text == "Hello World & co\n\nline one\nline two\nthe link"
    assert parsed.html.startswith("<html>")


def test_empty_plain_alternative_falls_back_to_the_html(mail: Build) -> None:
    parsed = parse_message(
        mail(
            """
            Content-Type: multipart/alternative; boundary=b

            --b
            Content-Type: text/plain

            --b
            Content-Type: text/html

            <b>some html text</b>
            --b--
            """
        )
    )
    assert parsed.text == "some html text"


def test_inline_text_parts_of_a_mixed_message_are_concatenated(mail: Build) -> None:
    parsed = parse_message(
        mail(
            """
            Content-Type: multipart/mixed; boundary=b

            --b
            Content-Type: text/plain

            First part.
            --b
            Content-Type: image/png
            Content-Disposition: inline

            PNG
            --b
            Content-Type: text/plain

            List footer.
            --b--
            """
        )
    )
    assert parsed.text == "First part.\n\nList footer."
    assert [a.content_type for a in parsed.attachments] == ["image/png"]


def test_text_parts_with_attachment_disposition_or_a_name_are_attachments(mail: Build) -> None:
    parsed = parse_message(
        mail(
            """
            Content-Type: multipart/mixed; boundary=b

            --b
            Content-Type: text/plain

            Body.
            --b
            Content-Type: text/plain
            Content-Disposition: attachment

            attached
            --b
            Content-Type: text/html; name=page.html

            <p>page</p>
            --b--
            """
        )
    )
    assert parsed.text == "Body."
    assert parsed.html == ""
    assert [(a.filename, a.content) for a in parsed.attachments] == [("", b"attached"), ("page.html", b"<p>page</p>")]


def test_declared_charset_is_honoured(mail: Build) -> None:
    raw = mail("Content-Type: text/plain; charset=koi8-r\n\nXX\n").replace(b"XX", "Привет".encode("koi8-r"))
    assert parse_message(raw).text == "Привет"


def test_windows_1252_declared_as_iso_8859_1_is_recovered(mail: Build) -> None:
    raw = mail("Content-Type: text/plain; charset=iso-8859-1\n\nXX\n").replace(b"XX", "“quoted” – 5 €".encode("cp1252"))
    assert parse_message(raw).text == "“quoted” – 5 €"


def test_windows_1250_declared_as_iso_8859_2_is_recovered(mail: Build) -> None:
    raw = mail("Content-Type: text/plain; charset=iso-8859-2\n\nXX\n").replace(b"XX", "Šťastný „den“".encode("cp1250"))
    parsed = parse_message(raw)
    assert parsed.text == "Šťastný „den“"
    assert any("cp1250" in defect for defect in parsed.defects)


def test_gb2312_label_is_read_as_gb18030(mail: Build) -> None:
    text = "參數設定 and 简体"  # traditional characters are GBK, not GB2312
    raw = mail("Content-Type: text/plain; charset=gb2312\n\nXX\n").replace(b"XX", text.encode("gb18030"))
    assert parse_message(raw).text == text


def test_iso_2022_jp_with_microsoft_extensions_is_decoded(mail: Build) -> None:
    # ① is in the NEC row of CP50220, which Python's iso2022_jp codecs reject.
    jis = b'\x1b$B-!#1ET#38)$N03$H!"\x1b(B'
    raw = mail("Content-Type: text/plain; charset=ISO-2022-JP\n\nXX\n").replace(b"XX", jis)
    assert parse_message(raw).text == "①１都３県の鯵と、"


def test_undeclared_8bit_text_is_utf8_else_windows_1252(mail: Build) -> None:
    utf8 = mail("Subject: x\n\nGrüße\n")
    assert parse_message(utf8).text == "Grüße"
    assert parse_message(utf8.replace("ü".encode(), b"\xfc").replace("ß".encode(), b"\xdf")).text == "Grüße"


def test_unknown_charset_never_raises(mail: Build) -> None:
    raw = mail("Content-Type: text/plain; charset=x-no-such-charset\n\nGrüße\n")
    parsed = parse_message(raw)
    assert parsed.text == "Grüße"
    assert any("unknown charset" in defect for defect in parsed.defects)


def test_bad_base64_padding_is_repaired(mail: Build) -> None:
    raw = mail("Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\nSGVsbG8gV29ybGQ\n")
    assert parse_message(raw).text == "Hello World"


# --- attachments ---------------------------------------------------------------------------


def test_inline_cid_image_is_an_inline_attachment_with_its_content_id(mail: Build) -> None:
    parsed = parse_message(
        mail(
            """
            Content-Type: multipart/related; boundary=r

            --r
            Content-Type: text/html

            <p>logo: <img src="cid:logo@example.com"></p>
            --r
            Content-Type: image/gif; name=logo.gif
            Content-Transfer-Encoding: base64
            Content-ID: <logo@example.com>

            R0lGODlhAQABAAAAACw=
            --r--
            """
        )
    )
    (image,) = parsed.attachments
    assert (image.filename, image.content_type, image.content_id, image.inline) == (
        "logo.gif",
        "image/gif",
        "logo@example.com",
        True,
    )
    assert image.content.startswith(b"GIF89a")
    assert parsed.text == "logo:"


def test_attached_mail_is_kept_whole_and_named_after_its_subject(mail: Build) -> None:
    inner = "From: a@example.com\nSubject: The original\n\nOriginal body\n"
    outer = "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nSee attached.\n"
    parsed = parse_message(mail(outer + "--b\nContent-Type: message/rfc822\n\n" + inner + "--b--\n"))
    name, ctype, content = only_attachment(parsed)
    assert (name, ctype) == ("The original.eml", "message/rfc822")
    assert content == mail(inner).removesuffix(b"\r\n")  # the line end before "--b" is the boundary's
    assert parsed.text == "See attached."


def test_rfc2231_continued_filename_is_reassembled(mail: Build) -> None:
    parsed = parse_message(
        mail(
            """
            Content-Type: multipart/mixed; boundary=b

            --b
            Content-Type: application/pdf
            Content-Disposition: attachment;
             filename*0*=utf-8''Gr%C3%BC%C3%9Fe%20aus;
             filename*1*=%20K%C3%B6ln.pdf

            %PDF
            --b--
            """
        )
    )
    assert only_attachment(parsed)[0] == "Grüße aus Köln.pdf"


def test_rfc2047_and_raw_8bit_filenames_are_decoded(mail: Build) -> None:
    raw = mail(
        """
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: application/octet-stream; name="=?utf-8?q?R=C3=A9sum=C3=A9.doc?="

        x
        --b
        Content-Type: application/octet-stream
        Content-Disposition: attachment; filename="Bestellbestätigung.pdf"

        y
        --b--
        """
    )
    latin1 = raw.replace("ä".encode(), b"\xe4")
    for message in (raw, latin1):
        assert [a.filename for a in parse_message(message).attachments] == ["Résumé.doc", "Bestellbestätigung.pdf"]


def test_uuencoded_file_in_a_text_body_becomes_an_attachment(mail: Build) -> None:
    parsed = parse_message(
        mail(
            """
            Subject: notes

            See the file:

            begin 644 hello.txt
            %2&5L;&\\`
            `
            end

            Regards
            """
        )
    )
    assert only_attachment(parsed) == ("hello.txt", "text/plain", b"Hello")
    assert parsed.text == "See the file:\n\n\n\nRegards"


def test_x_uuencode_transfer_encoding_is_decoded(mail: Build) -> None:
    parsed = parse_message(
        mail(
            """
            Content-Type: multipart/mixed; boundary=b

            --b
            Content-Type: application/octet-stream; name=hello.bin
            Content-Transfer-Encoding: x-uuencode

            begin 600 hello.bin
            %2&5L;&\\`
            `
            end
            --b--
            """
        )
    )
    assert only_attachment(parsed)[2] == b"Hello"


def _winmail_message(mail: Build, blob: bytes, text: str = "") -> bytes:
    body = f"--b\nContent-Type: text/plain\n\n{text}\n" if text else ""
    encoded = base64.encodebytes(blob).decode()
    return mail(
        "Content-Type: multipart/mixed; boundary=b\n\n"
        f"{body}--b\nContent-Type: application/ms-tnef; name=winmail.dat\n"
        f"Content-Transfer-Encoding: base64\n\n{encoded}--b--\n"
    )


def test_winmail_dat_is_unpacked_into_its_attachments(mail: Build, winmail: Callable[..., bytes]) -> None:
    raw = _winmail_message(mail, winmail({"report.pdf": b"%PDF-1.4", "notes.txt": b"notes"}), text="See attached.")
    parsed = parse_message(raw)
    assert [(a.filename, a.content_type, a.content) for a in parsed.attachments] == [
        ("report.pdf", "application/pdf", b"%PDF-1.4"),
        ("notes.txt", "text/plain", b"notes"),
    ]
    assert parsed.text == "See attached."


def test_winmail_dat_body_is_used_when_there_is_no_other(mail: Build, winmail: Callable[..., bytes]) -> None:
    parsed = parse_message(_winmail_message(mail, winmail({"a.txt": b"a"}, body="Body from Outlook")))
    assert parsed.text == "Body from Outlook"


def test_winmail_dat_compressed_rtf_body_becomes_text(mail: Build, winmail: Callable[..., bytes]) -> None:
    rtf = rb"{\rtf1\ansi\ansicpg1252{\fonttbl{\f0 Arial;}}\pard Hello from Outlook\par Gr\'fc\'dfe \u8364? 5}"
    parsed = parse_message(_winmail_message(mail, winmail({"a.txt": b"abc"}, rtf=rtf)))
    assert parsed.text == "Hello from Outlook\nGrüße € 5"
    assert only_attachment(parsed)[0] == "a.txt"


def test_broken_winmail_dat_stays_an_attachment_with_a_defect(mail: Build) -> None:
    parsed = parse_message(_winmail_message(mail, b"not a TNEF stream at all"))
    assert only_attachment(parsed)[:2] == ("winmail.dat", "application/ms-tnef")
    assert any("winmail.dat" in defect for defect in parsed.defects)


# --- unreadable and hostile input --------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"\r\n\r\n  \r\n", b"\x00\x01\x02\xff" * 100, b"Just some prose, no headers.\n"])
def test_input_without_a_header_block_is_unreadable(raw: bytes) -> None:
    with pytest.raises(UnreadableMessage):
        parse_message(raw)


def test_broken_mime_still_yields_a_message_with_defects(mail: Build) -> None:
    parsed = parse_message(
        mail(
            """
            Subject: cut short
            Content-Type: multipart/mixed; boundary=b

            --b
            Content-Type: text/plain

            The end boundary never comes.
            """
        )
    )
    assert parsed.subject == "cut short"
    assert parsed.text == "The end boundary never comes."
    assert parsed.defects


def test_multipart_without_boundary_parameter_separator_is_still_split(mail: Build) -> None:
    raw = mail('Content-Type: multipart/mixed\n\tboundary="b"\n\n--b\nContent-Type: image/png\n\nPNG\n--b--\n')
    assert only_attachment(parse_message(raw))[1] == "image/png"


def _timed(raw: bytes) -> tuple[ParsedMessage, float]:
    started = time.perf_counter()
    parsed = parse_message(raw)
    return parsed, time.perf_counter() - started


def test_deep_nesting_is_bounded() -> None:
    nesting = b"".join(b"Content-Type: multipart/mixed; boundary=n%d\r\n\r\n--n%d\r\n" % (i, i) for i in range(5000))
    parsed, _ = _timed(b"Subject: deep\r\n" + nesting + b"Content-Type: text/plain\r\n\r\nx\r\n")
    assert parsed.subject == "deep"
    assert any("too deep" in defect for defect in parsed.defects)


def test_thousands_of_parts_are_bounded() -> None:
    parts = b"".join(b"--p\r\nContent-Type: application/octet-stream\r\n\r\n%d\r\n" % i for i in range(5000))
    parsed, _ = _timed(b"Content-Type: multipart/mixed; boundary=p\r\n\r\n" + parts + b"--p--\r\n")
    assert len(parsed.attachments) < 1000
    assert any("MIME parts" in defect for defect in parsed.defects)


def test_huge_headers_are_bounded() -> None:
    many = b"".join(b"X-Filler-%d: value\r\n" % i for i in range(5000))
    long_to = b"To: " + b", ".join(b"u%d@example.com" % i for i in range(20000)) + b"\r\n"
    parsed, _ = _timed(b"Subject: big\r\n" + long_to + many + b"\r\nbody\r\n")
    assert parsed.subject == "big"
    assert 0 < len(parsed.to) <= 1000
    assert len(parsed.headers) <= 1000
