//! Issue 25: the mail real helpdesks receive, one test per class of failure, on messages
//! written byte for byte for it (legacy charsets as raw bytes; generated once with Python's
//! codecs, the bytes are below as they go over the wire).

use mailroom_core::{Mailbox, understand};

const GBK: &[u8] = b"From: \xd5\xc5\xce\xb0 <zhang.wei@example.cn>\r\n\
To: \xbf\xcd\xb7\xfe <support@acme.example>\r\n\
Subject: \xb9\xd8\xd3\xda\xb6\xa9\xb5\xa5\xb5\xc4\xce\xca\xcc\xe2\r\n\
Date: Tue, 5 Mar 2024 10:00:00 +0800\r\n\
Message-ID: <gbk1@example.cn>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=gb2312\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
\xc4\xe3\xba\xc3\xa3\xac\xce\xd2\xb5\xc4\xb6\xa9\xb5\xa5\xbb\xb9\xc3\xbb\xd3\xd0\xb5\xbd\xa1\xa3\r\n\
";
const BIG5: &[u8] = b"From: \xb3\xaf\xa4p\xa9j <chen@example.tw>\r\n\
To: support@acme.example\r\n\
Subject: \xbd\xd0\xb0\xdd\xb5o\xb2\xbc\r\n\
Date: Tue, 5 Mar 2024 10:00:00 +0800\r\n\
Message-ID: <big5@example.tw>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=big5\r\n\
\r\n\
\xc1\xc2\xc1\xc2\r\n\
";
const SJIS_UNDECLARED: &[u8] = b"From: \x8eR\x93c\x91\xbe\x98Y <yamada@example.jp>\r\n\
To: support@acme.example\r\n\
Subject: \x82\xa8\x96\xe2\x82\xa2\x8d\x87\x82\xed\x82\xb9\x82\xcc\x8c\x8f\x82\xc9\x82\xc2\x82\xa2\x82\xc4\x81A\x82\xb2\x8am\x94F\x82\xf0\x82\xa8\x8a\xe8\x82\xa2\x82\xb5\x82\xdc\x82\xb7\r\n\
Date: Tue, 5 Mar 2024 10:00:00 +0900\r\n\
Message-ID: <sjis@example.jp>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
please see the subject\r\n\
";
const LATIN1: &[u8] = b"From: J\xf6rg M\xfcller <joerg@example.de>\r\n\
To: support@acme.example\r\n\
Subject: Pr\xfcfbericht f\xfcr M\xe4rz\r\n\
Date: Tue, 5 Mar 2024 10:00:00 +0100\r\n\
Message-ID: <latin1@example.de>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Anbei der Bericht.\r\n\
--b1\r\n\
Content-Type: application/pdf; name=\"Pr\xfcfbericht M\xe4rz.pdf\"\r\n\
Content-Disposition: attachment; filename=\"Pr\xfcfbericht M\xe4rz.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--b1--\r\n\
";
const BROKEN_ADDRESSES: &[u8] = b"From: John Q. Public john.public@example.com>\r\n\
To: support@acme.example, Bob Smith bob@example.org\r\n\
Cc: Jane Doe <jane@example.org\r\n\
Subject: broken addresses\r\n\
Date: Tue, 5 Mar 2024 10:00:00 +0000\r\n\
Message-ID: <broken@example.com>\r\n\
\r\n\
hello\r\n\
";
const DAEMON: &[u8] = b"From: Mail Delivery Subsystem <MAILER-DAEMON>\r\n\
To: support@acme.example\r\n\
Subject: Returned mail: see transcript for details\r\n\
Date: Tue, 5 Mar 2024 10:00:00 +0000\r\n\
Message-ID: <202403051000.ABC@mx.example.net>\r\n\
\r\n\
The original message was received ...\r\n\
";
const NULL_SENDER: &[u8] = b"From: <>\r\n\
To: support@acme.example\r\n\
Subject: Undeliverable\r\n\
Date: Tue, 5 Mar 2024 10:00:00 +0000\r\n\
Message-ID: <nd1@relay.example.org>\r\n\
\r\n\
Undeliverable.\r\n\
";
const FORWARD: &[u8] = b"From: Dave <dave@acme.example>\r\n\
To: support@acme.example\r\n\
Subject: Fwd: Quote request\r\n\
Date: Tue, 5 Mar 2024 10:00:00 +0000\r\n\
Message-ID: <fwd1@acme.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b2\"\r\n\
\r\n\
--b2\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
See below.\r\n\
--b2\r\n\
Content-Type: message/rfc822\r\n\
Content-Disposition: attachment\r\n\
\r\n\
From: Carol <carol@example.org>\r\n\
To: sales@acme.example\r\n\
Subject: Quote request\r\n\
Date: Mon, 4 Mar 2024 09:00:00 +0000\r\n\
Message-ID: <orig1@example.org>\r\n\
\r\n\
Can you quote 10 units?\r\n\
--b2\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Disposition: attachment; filename=\"report.html\"\r\n\
\r\n\
<html><body><p>Report</p></body></html>\r\n\
--b2--\r\n\
";
const FWD_INNER: &[u8] = b"From: Carol <carol@example.org>\r\n\
To: sales@acme.example\r\n\
Subject: Quote request\r\n\
Date: Mon, 4 Mar 2024 09:00:00 +0000\r\n\
Message-ID: <orig1@example.org>\r\n\
\r\n\
Can you quote 10 units?\r\n\
";
const REPORT: &[u8] = b"From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n\
To: support@acme.example\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Date: Tue, 5 Mar 2024 10:00:00 +0000\r\n\
Message-ID: <dsn1@mx.example.net>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b3\"\r\n\
\r\n\
--b3\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
I'm sorry to have to inform you that your message could not be delivered.\r\n\
--b3\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.net\r\n\
\r\n\
Final-Recipient: rfc822; nobody@example.com\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
\r\n\
--b3\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: Carol <carol@example.org>\r\n\
To: sales@acme.example\r\n\
Subject: Quote request\r\n\
Date: Mon, 4 Mar 2024 09:00:00 +0000\r\n\
Message-ID: <orig1@example.org>\r\n\
\r\n\
Can you quote 10 units?\r\n\
\r\n\
--b3--\r\n\
";
const ENCODINGS: &[u8] = b"From: Erin <erin@example.org>\r\n\
To: support@acme.example\r\n\
Subject: encodings\r\n\
Date: Tue, 5 Mar 2024 10:00:00 +0000\r\n\
Message-ID: <enc1@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b4\"\r\n\
\r\n\
--b4\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Gr=C3=BC=C3=9Fe aus K=C3=B6ln,=\x0abis bald\x0a--b4\r\n\
Content-Type: application/octet-stream; name=\"truncated.bin\"\r\n\
Content-Disposition: attachment; filename=\"truncated.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
SGVsbG8sIHdvcmx\r\n\
--b4\r\n\
Content-Type: application/octet-stream; name=\"damaged.bin\"\r\n\
Content-Disposition: attachment; filename=\"damaged.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
SGVs*bG8s\r\n\
IHdv.cmxk==\r\n\
--b4\r\n\
Content-Type: text/plain; name=\"hello.txt\"\r\n\
Content-Disposition: attachment; filename=\"hello.txt\"\r\n\
Content-Transfer-Encoding: x-uuencode\r\n\
\r\n\
begin 644 hello.txt\r\n\
-2&5L;&\\L('=O<FQD\"@  \r\n\
`\r\n\
end\r\n\
--b4--\r\n\
";
const NAMES: &[u8] = b"From: Fay <fay@example.de>\r\n\
To: support@acme.example\r\n\
Subject: names\r\n\
Date: Tue, 5 Mar 2024 10:00:00 +0000\r\n\
Message-ID: <names1@example.de>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b5\"\r\n\
\r\n\
--b5\r\n\
Content-Type: text/plain\r\n\
\r\n\
three files\r\n\
--b5\r\n\
Content-Type: application/pdf\r\n\
Content-Disposition: attachment;\r\n\
\x20filename*0*=UTF-8''Rechnung%20M%C3%A4rz;\r\n\
\x20filename*1*=%202024.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--b5\r\n\
Content-Type: application/pdf; name=\"=?ISO-8859-1?Q?Pr=FCfung.pdf?=\"\r\n\
Content-Disposition: attachment\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--b5\r\n\
Content-Type: application/pdf\r\n\
Content-Disposition: attachment; filename*=iso-8859-1'de'Gr%F6%DFe.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--b5--\r\n\
";
const TRUNCATED_FORWARDS: &[u8] = b"From: Hal <hal@acme.example>\r\n\
To: support@acme.example\r\n\
Subject: two forwards\r\n\
Date: Tue, 5 Mar 2024 10:00:00 +0000\r\n\
Message-ID: <tf1@acme.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
--outer\r\n\
Content-Type: text/plain\r\n\
\r\n\
Two mails attached.\r\n\
--outer\r\n\
Content-Type: message/rfc822; name=\"first.eml\"\r\n\
Content-Disposition: attachment; filename=\"first.eml\"\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
From: Gus <gus@example.org>\r\n\
Subject: first one\r\n\
Message-ID: <first.one@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=never\r\n\
--outer\r\n\
Content-Type: message/rfc822; name=\"second.eml\"\r\n\
Content-Disposition: attachment; filename=\"second.eml\"\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
From: Gus <gus@example.org>\r\n\
Subject: second one\r\n\
Message-ID: <second.one@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=never\r\n\
--outer--\r\n\
";
const TRUNC_INNER_1: &[u8] = b"From: Gus <gus@example.org>\r\n\
Subject: first one\r\n\
Message-ID: <first.one@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=never\r\n\
";
const UNDECLARED_BODIES: &[u8] = b"From: Ivy <ivy@example.cn>\r\n\
To: support@acme.example\r\n\
Subject: bodies\r\n\
Date: Tue, 5 Mar 2024 10:00:00 +0000\r\n\
Message-ID: <ub1@example.cn>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b6\r\n\
\r\n\
--b6\r\n\
Content-Type: text/plain\r\n\
\r\n\
\xc4\xfa\xba\xc3\xa3\xac\xc7\xeb\xce\xca\xce\xd2\xb5\xc4\xb7\xa2\xc6\xb1\xca\xb2\xc3\xb4\xca\xb1\xba\xf2\xc4\xdc\xbf\xaa\xb3\xf6\xc0\xb4\xa3\xbf\xd0\xbb\xd0\xbb\xa1\xa3\r\n\
--b6\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
Gr\xfc\xdfe aus M\xfcnchen, vielen Dank f\xfcr Ihre schnelle Antwort.\r\n\
--b6\r\n\
Content-Type: text/plain; charset=\"ISO-2022-JP\"\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
\xa5\xe1\xa1\xbc\xa5\xeb\xa5\xa2\xa5\xc9\xa5\xec\xa5\xb9\xa4\xf2\xa4\xb4\xb3\xce\xc7\xa7\xa4\xce\xbe\xe5\xa1\xa2\xba\xc6\xc1\xf7\xbf\xae\xa4\xb7\xa4\xc6\xa4\xaf\xa4\xc0\xa4\xb5\xa4\xa4\xa1\xa3\r\n\
--b6--\r\n\
";
const NO_CONTENT_TYPE: &[u8] = b"From: Jun <jun@example.jp>\r\n\
To: support@acme.example\r\n\
Subject: sjis\r\n\
Date: Tue, 5 Mar 2024 10:00:00 +0000\r\n\
Message-ID: <nct1@example.jp>\r\n\
\r\n\
\x82\xa8\x90\xa2\x98b\x82\xc9\x82\xc8\x82\xc1\x82\xc4\x82\xa8\x82\xe8\x82\xdc\x82\xb7\x81B\x90\xbf\x8b\x81\x8f\x91\x82\xcc\x8c\x8f\x82\xc5\x82\xb2\x98A\x97\x8d\x82\xa2\x82\xbd\x82\xb5\x82\xdc\x82\xb5\x82\xbd\x81B\r\n\
";
const UNCLOSED_INNER: &[u8] = b"From: Kim <kim@example.org>\r\n\
To: support@acme.example\r\n\
Subject: unclosed\r\n\
Date: Tue, 5 Mar 2024 10:00:00 +0000\r\n\
Message-ID: <uc1@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=outer\r\n\
\r\n\
--outer\r\n\
Content-Type: multipart/mixed; boundary=inner\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain\r\n\
\r\n\
body\r\n\
--inner\r\n\
Content-Type: application/pdf; name=a.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--outer\r\n\
Content-Type: application/pdf; name=b.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--outer--\r\n\
";

fn mb(name: Option<&str>, email: &str, repaired: bool) -> Mailbox {
    Mailbox { name: name.map(str::to_string), email: email.to_string(), repaired }
}

fn names(raw: &[u8]) -> Vec<(Option<String>, String, u64)> {
    let m = understand(raw).expect("parses").message;
    m.attachments.into_iter().map(|a| (a.name, a.content_type, a.size)).collect()
}

#[test]
fn class_1_raw_8bit_headers_in_legacy_charsets_are_decoded() {
    // GB2312 declared for the body: the raw GBK headers are read with it.
    let m = understand(GBK).expect("parses").message;
    assert_eq!(m.subject, "关于订单的问题");
    assert_eq!(m.from, Some(mb(Some("张伟"), "zhang.wei@example.cn", false)));
    assert_eq!(m.to, [mb(Some("客服"), "support@acme.example", false)]);
    assert_eq!(m.text.trim(), "你好，我的订单还没有到。");
    assert!(
        m.defects.iter().any(|d| d == "Subject header in raw 8-bit text: read as GBK"),
        "{:?}",
        m.defects
    );

    let m = understand(BIG5).expect("parses").message;
    assert_eq!(m.subject, "請問發票");
    assert_eq!(m.from, Some(mb(Some("陳小姐"), "chen@example.tw", false)));

    // The body declares us-ascii, which cannot be it: detection finds Shift_JIS.
    let m = understand(SJIS_UNDECLARED).expect("parses").message;
    assert_eq!(m.subject, "お問い合わせの件について、ご確認をお願いします");
    assert_eq!(m.from, Some(mb(Some("山田太郎"), "yamada@example.jp", false)));

    // ISO-8859-1 headers and a Windows-1252 file name given raw.
    let m = understand(LATIN1).expect("parses").message;
    assert_eq!(m.subject, "Prüfbericht für März");
    assert_eq!(m.from, Some(mb(Some("Jörg Müller"), "joerg@example.de", false)));
    assert_eq!(names(LATIN1), [(Some("Prüfbericht März.pdf".into()), "application/pdf".into(), 9)]);
    // Bodies sent 8-bit with no charset, declaring ASCII, or labelled ISO-2022-JP (a 7-bit
    // charset) over EUC-JP bytes: the detected charset.
    let m = understand(UNDECLARED_BODIES).expect("parses").message;
    assert_eq!(
        m.text,
        "您好，请问我的发票什么时候能开出来？谢谢。\nGrüße aus München, vielen Dank für Ihre schnelle Antwort.\n\
         メールアドレスをご確認の上、再送信してください。"
    );
    let m = understand(NO_CONTENT_TYPE).expect("parses").message;
    assert_eq!(m.text.trim(), "お世話になっております。請求書の件でご連絡いたしました。");
    assert!(
        m.defects.iter().any(|d| d == "8-bit text without a charset: read as Shift_JIS"),
        "{:?}",
        m.defects
    );
    for raw in [GBK, BIG5, SJIS_UNDECLARED, LATIN1, UNDECLARED_BODIES, NO_CONTENT_TYPE] {
        let json = serde_json::to_string(&understand(raw).expect("parses").message).expect("json");
        assert!(!json.contains('\u{fffd}'), "{json}");
    }
}

#[test]
fn class_2_broken_address_headers_yield_their_best_reading_marked_repaired() {
    let m = understand(BROKEN_ADDRESSES).expect("parses").message;
    assert_eq!(m.from, Some(mb(Some("John Q. Public"), "john.public@example.com", true)));
    assert_eq!(
        m.to,
        [mb(None, "support@acme.example", false), mb(Some("Bob Smith"), "bob@example.org", true)]
    );
    // mail-parser reads a missing `>` itself.
    assert_eq!(m.cc, [mb(Some("Jane Doe"), "jane@example.org", false)]);
    assert!(m.defects.iter().any(|d| d == "From header not RFC 5322: read as john.public@example.com"));

    // A bare MAILER-DAEMON takes the domain of the Message-ID; the null sender is the
    // mail system of the host that made the message.
    let m = understand(DAEMON).expect("parses").message;
    assert_eq!(m.from, Some(mb(Some("Mail Delivery Subsystem"), "MAILER-DAEMON@mx.example.net", true)));
    let m = understand(NULL_SENDER).expect("parses").message;
    assert_eq!(m.from, Some(mb(None, "MAILER-DAEMON@relay.example.org", true)));
    // Serialised, the flag shows only where it is set.
    let json = serde_json::to_value(&m.to).expect("json");
    assert_eq!(json, serde_json::json!([{"name": null, "email": "support@acme.example"}]));
}

#[test]
fn class_3_forwarded_messages_reports_and_html_files_are_attachments() {
    let m = understand(FORWARD).expect("parses").message;
    assert_eq!(m.text.trim(), "See below.");
    assert!(m.html.is_none(), "an HTML file is not the body: {:?}", m.html);
    let a: Vec<_> =
        m.attachments.iter().map(|a| (a.name.as_deref(), a.content_type.as_str(), a.size)).collect();
    assert_eq!(
        a,
        [
            // The line break before a boundary belongs to the boundary (RFC 2046).
            (Some("Quote request.eml"), "message/rfc822", FWD_INNER.len() as u64 - 2),
            (Some("report.html"), "text/html", 39),
        ]
    );
    let fwd = m.attachments[0].message.as_ref().expect("the forwarded message is read");
    assert_eq!(fwd.message_id.as_deref(), Some("orig1@example.org"));
    assert_eq!(fwd.from, Some(mb(Some("Carol"), "carol@example.org", false)));
    assert_eq!(fwd.subject, "Quote request");
    assert_eq!(fwd.date.map(|d| d.to_rfc3339()).as_deref(), Some("2024-03-04T09:00:00+00:00"));

    let u = understand(REPORT).expect("parses");
    let a: Vec<_> =
        u.message.attachments.iter().map(|a| (a.name.as_deref(), a.content_type.as_str())).collect();
    assert_eq!(a, [(None, "message/delivery-status"), (Some("Quote request.eml"), "message/rfc822")]);
    assert!(u.bodies[0].starts_with(b"Reporting-MTA: dns; mx.example.net"));
    assert_eq!(u.bodies[1], FWD_INNER);
    assert_eq!(u.message.original_message_ids, ["orig1@example.org"]);

    // Two forwards sent 8bit whose own multipart never starts: each is read up to the
    // container's next boundary (mail-parser alone takes the second into the first).
    let u = understand(TRUNCATED_FORWARDS).expect("parses");
    let a: Vec<_> = u
        .message
        .attachments
        .iter()
        .map(|a| (a.name.as_deref(), a.size, a.message.as_ref().map(|m| m.subject.as_str())))
        .collect();
    // Without the line break before the boundary; the second name is one letter longer,
    // twice (Subject and Message-ID).
    let n = TRUNC_INNER_1.len() as u64 - 2;
    assert_eq!(
        a,
        [(Some("first.eml"), n, Some("first one")), (Some("second.eml"), n + 2, Some("second one"))]
    );
    assert_eq!(u.bodies[0], TRUNC_INNER_1[..TRUNC_INNER_1.len() - 2]);

    // An inner multipart never closed: closed where the outer boundary comes again, so the
    // outer multipart's last attachment is its own (mail-parser alone lists only a.pdf).
    assert_eq!(
        names(UNCLOSED_INNER),
        [
            (Some("a.pdf".into()), "application/pdf".into(), 9),
            (Some("b.pdf".into()), "application/pdf".into(), 9)
        ]
    );
}

#[test]
fn class_4_broken_encodings_are_decoded_as_far_as_they_go() {
    let u = understand(ENCODINGS).expect("parses");
    // Quoted-printable with bare line feeds (a soft break included).
    assert_eq!(u.message.text, "Grüße aus Köln,bis bald");
    let a: Vec<_> = u.message.attachments.iter().map(|a| (a.name.as_deref(), a.size)).collect();
    // The byte counts are what Python's email package decodes (11, 12, 13).
    assert_eq!(a, [(Some("truncated.bin"), 11), (Some("damaged.bin"), 12), (Some("hello.txt"), 13)]);
    assert_eq!(u.bodies[0], b"Hello, worl");
    assert_eq!(u.bodies[1], b"Hello, world");
    assert_eq!(u.bodies[2], b"Hello, world\n");
    let d = &u.message.defects;
    assert!(
        d.iter().any(|d| d == "base64 body with characters outside the alphabet: 12 bytes decoded"),
        "{d:?}"
    );
    assert!(d.iter().any(|d| d == "uuencoded part: 13 bytes decoded"), "{d:?}");
}

#[test]
fn class_5_rfc2231_and_rfc2047_file_names_are_decoded() {
    let got: Vec<_> = names(NAMES).into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(
        got,
        [Some("Rechnung März 2024.pdf".into()), Some("Prüfung.pdf".into()), Some("Größe.pdf".into())]
    );
}

#[test]
fn the_stored_bytes_are_never_changed_by_a_repair() {
    for raw in [GBK, LATIN1, ENCODINGS] {
        let m = understand(raw).expect("parses").message;
        assert_eq!(m.sha256, mailroom_core::sha256(raw).to_string());
        assert_eq!(m.size, raw.len() as u64);
    }
}
