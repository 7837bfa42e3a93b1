//! Just enough XML for Route 53's answers and requests: elements (namespace prefixes dropped,
//! attributes skipped), their text, the predefined entities, character references and CDATA.
//! Document type declarations are refused, so no entity is ever expanded beyond those.

/// Elements nest at most this deep (Route 53's answers nest 6 levels).
const MAX_DEPTH: usize = 32;

/// One element: its local name, its own text (decoded), and its child elements in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) children: Vec<Element>,
}

impl Element {
    /// The first child element called `name`.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child element called `name`.
    pub(crate) fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The element at a path of child names (`["ChangeInfo", "Status"]`).
    pub(crate) fn at(&self, path: &[&str]) -> Option<&Element> {
        path.iter().try_fold(self, |element, name| element.child(name))
    }

    /// The text at a path of child names, trimmed.
    pub(crate) fn text_at(&self, path: &[&str]) -> Option<&str> {
        self.at(path).map(|e| e.text.trim())
    }
}

/// Parses a document into its root element; the error says what is wrong and where.
pub(crate) fn parse(document: &str) -> Result<Element, String> {
    let mut rest = document.strip_prefix('\u{feff}').unwrap_or(document);
    // Open elements; the last one receives text and children.
    let mut open: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let at = |rest: &str| document.len() - rest.len();
    while !rest.is_empty() {
        if let Some(tail) = rest.strip_prefix("<?") {
            rest = after(tail, "?>").ok_or_else(|| format!("unterminated processing instruction at {}", at(rest)))?;
        } else if let Some(tail) = rest.strip_prefix("<!--") {
            rest = after(tail, "-->").ok_or_else(|| format!("unterminated comment at {}", at(rest)))?;
        } else if let Some(tail) = rest.strip_prefix("<![CDATA[") {
            let end = tail
                .find("]]>")
                .ok_or_else(|| format!("unterminated CDATA section at {}", at(rest)))?;
            let element = open
                .last_mut()
                .ok_or_else(|| format!("text outside the root element at {}", at(rest)))?;
            element.text.push_str(&tail[..end]);
            rest = &tail[end + 3..];
        } else if rest.starts_with("<!") {
            return Err(format!("document type declarations are not accepted (at {})", at(rest)));
        } else if let Some(tail) = rest.strip_prefix("</") {
            let end = tail
                .find('>')
                .ok_or_else(|| format!("unterminated end tag at {}", at(rest)))?;
            let name = local(tail[..end].trim());
            let element = open
                .pop()
                .ok_or_else(|| format!("end tag </{name}> without a start tag at {}", at(rest)))?;
            if element.name != name {
                return Err(format!("</{name}> closes <{}> at {}", element.name, at(rest)));
            }
            close(element, &mut open, &mut root);
            rest = &tail[end + 1..];
        } else if let Some(tail) = rest.strip_prefix('<') {
            let end = tag_end(tail).ok_or_else(|| format!("unterminated start tag at {}", at(rest)))?;
            let tag = &tail[..end];
            let (tag, empty) = match tag.strip_suffix('/') {
                Some(tag) => (tag, true),
                None => (tag, false),
            };
            let name = tag.split(|c: char| c.is_ascii_whitespace()).next().unwrap_or_default();
            if name.is_empty() {
                return Err(format!("a start tag without a name at {}", at(rest)));
            }
            if root.is_some() {
                return Err(format!("content after the root element at {}", at(rest)));
            }
            if open.len() >= MAX_DEPTH {
                return Err(format!("elements nested deeper than {MAX_DEPTH} at {}", at(rest)));
            }
            let element = Element {
                name: local(name).to_string(),
                ..Element::default()
            };
            if empty {
                close(element, &mut open, &mut root);
            } else {
                open.push(element);
            }
            rest = &tail[end + 1..];
        } else {
            let end = rest.find('<').unwrap_or(rest.len());
            let text = &rest[..end];
            match open.last_mut() {
                Some(element) => element
                    .text
                    .push_str(&unescape(text).map_err(|e| format!("{e} at {}", at(rest)))?),
                None if text.trim().is_empty() => {}
                None => return Err(format!("text outside the root element at {}", at(rest))),
            }
            rest = &rest[end..];
        }
    }
    if let Some(element) = open.last() {
        return Err(format!("<{}> is not closed", element.name));
    }
    root.ok_or_else(|| "no root element".to_string())
}

/// What follows the first `end` in `text`.
fn after<'a>(text: &'a str, end: &str) -> Option<&'a str> {
    text.find(end).map(|i| &text[i + end.len()..])
}

/// Where a start tag's `>` is, skipping quoted attribute values.
fn tag_end(tag: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in tag.char_indices() {
        match (quote, c) {
            (None, '>') => return Some(i),
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
    }
    None
}

/// A name without its namespace prefix.
fn local(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, local)| local)
}

fn close(element: Element, open: &mut [Element], root: &mut Option<Element>) {
    match open.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

/// Text with its entity and character references decoded.
fn unescape(text: &str) -> Result<String, String> {
    let mut decoded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        decoded.push_str(&rest[..start]);
        let tail = &rest[start + 1..];
        let end = tail.find(';').ok_or("an unterminated entity reference")?;
        let entity = &tail[..end];
        let c = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x").or_else(|| entity.strip_prefix("#X")) {
                    u32::from_str_radix(hex, 16).ok()
                } else {
                    entity.strip_prefix('#').and_then(|decimal| decimal.parse().ok())
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("an unknown entity &{entity};"))?
            }
        };
        decoded.push(c);
        rest = &tail[end + 1..];
    }
    decoded.push_str(rest);
    Ok(decoded)
}

/// Text for an element's content: `&`, `<` and `>` escaped.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route53_answers_parse_into_elements() {
        let answer = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListResourceRecordSetsResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">
   <ResourceRecordSets>
      <ResourceRecordSet>
         <Name>_acme-challenge.example.com.</Name>
         <Type>TXT</Type>
         <TTL>300</TTL>
         <ResourceRecords>
            <ResourceRecord><Value>"a &amp; b" "&lt;c&gt;"</Value></ResourceRecord>
            <ResourceRecord><Value>&quot;d&#34;&#x20;"e"</Value></ResourceRecord>
         </ResourceRecords>
      </ResourceRecordSet>
   </ResourceRecordSets>
   <IsTruncated>false</IsTruncated>
   <MaxItems>1</MaxItems>
</ListResourceRecordSetsResponse>"#;
        let root = parse(answer).expect("parses");
        assert_eq!(root.name, "ListResourceRecordSetsResponse");
        assert_eq!(root.text_at(&["IsTruncated"]), Some("false"));
        let set = root.at(&["ResourceRecordSets", "ResourceRecordSet"]).expect("a set");
        assert_eq!(set.text_at(&["Name"]), Some("_acme-challenge.example.com."));
        let values: Vec<&str> = set
            .child("ResourceRecords")
            .into_iter()
            .flat_map(|r| r.children("ResourceRecord"))
            .filter_map(|r| r.child("Value"))
            .map(|v| v.text.as_str())
            .collect();
        assert_eq!(values, [r#""a & b" "<c>""#, r#""d" "e""#]);
        assert_eq!(root.at(&["ResourceRecordSets", "Nothing"]), None);
    }

    #[test]
    fn prefixes_attributes_empty_elements_comments_and_cdata() {
        let root = parse(
            "\u{feff}<r:Root xmlns:r='urn:x' a=\"1>2\"><!-- note --><Empty/><Also a='b' /><Data><![CDATA[<&>]]></Data></r:Root>",
        )
        .expect("parses");
        assert_eq!(root.name, "Root");
        let names: Vec<&str> = root.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Empty", "Also", "Data"]);
        assert_eq!(root.text_at(&["Data"]), Some("<&>"));
        assert_eq!(parse("<A/>").expect("parses").name, "A");
    }

    #[test]
    fn broken_documents_are_refused() {
        for (document, why) in [
            ("", "no root element"),
            ("  \n", "no root element"),
            ("<a><b></a>", "</a> closes <b>"),
            ("<a>", "<a> is not closed"),
            ("</a>", "end tag </a> without a start tag"),
            ("<a></a><b/>", "content after the root element"),
            ("text", "text outside the root element"),
            ("<a>&nbsp;</a>", "an unknown entity &nbsp;"),
            ("<a>&amp</a>", "an unterminated entity reference"),
            ("<a>&#xD800;</a>", "an unknown entity &#xD800;"),
            (
                "<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>",
                "document type declarations are not accepted",
            ),
            ("<a", "unterminated start tag"),
            ("<a><!-- x</a>", "unterminated comment"),
            ("<a><![CDATA[x</a>", "unterminated CDATA section"),
            ("<html><body>Bad gateway</body>", "<html> is not closed"),
        ] {
            let error = parse(document).expect_err(document);
            assert!(error.starts_with(why), "{document:?}: {error}");
        }
        let deep = format!("{}{}", "<a>".repeat(40), "</a>".repeat(40));
        assert!(
            parse(&deep)
                .expect_err("too deep")
                .starts_with("elements nested deeper than 32")
        );
    }

    #[test]
    fn text_is_escaped_for_element_content() {
        assert_eq!(escape(r#""tok" & <en>"#), r#""tok" &amp; &lt;en&gt;"#);
        let round_trip = format!("<V>{}</V>", escape("\"x\" & <y> 'z'"));
        assert_eq!(parse(&round_trip).expect("parses").text, "\"x\" & <y> 'z'");
    }
}
