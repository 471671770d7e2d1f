//! YAML files as documents: splitting a multi-document file at its `---` markers (so that a
//! broken document cannot take its neighbours down) and finding the line of a field in a
//! document's text, for messages that point at it.

/// One document of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document<'a> {
    /// 1-based index in the file.
    pub index: usize,
    /// 1-based line of the file where the document's text starts.
    pub first_line: usize,
    pub text: &'a str,
}

/// Splits at document markers: a line that is `---` (optionally followed by a space and
/// content) or `...`, at column 0, where YAML allows nothing else to start.
#[must_use]
pub fn split(file: &str) -> Vec<Document<'_>> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut first_line = 1;
    let mut offset = 0;
    for (line_number, line) in (1..).zip(file.split_inclusive('\n')) {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_start = bare == "---" || bare.starts_with("--- ");
        let is_end = bare == "...";
        if is_start || is_end {
            push(&mut documents, &file[start..offset], first_line);
            // Content after `--- ` on the marker line belongs to the new document.
            start = if is_start && bare.len() > 4 {
                offset + 4
            } else {
                offset + line.len()
            };
            first_line = if is_start && bare.len() > 4 {
                line_number
            } else {
                line_number + 1
            };
        }
        offset += line.len();
    }
    push(&mut documents, &file[start..], first_line);
    documents
}

impl Document<'_> {
    /// The file line of the document's first content (past leading comments and blanks).
    #[must_use]
    pub fn content_line(&self) -> usize {
        let skipped = self
            .text
            .lines()
            .take_while(|l| {
                let l = l.trim();
                l.is_empty() || l.starts_with('#')
            })
            .count();
        self.first_line + skipped
    }
}

fn push<'a>(documents: &mut Vec<Document<'a>>, text: &'a str, first_line: usize) {
    let blank = text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    });
    if !blank {
        documents.push(Document {
            index: documents.len() + 1,
            first_line,
            text,
        });
    }
}

/// One step of a field path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Parses `spec.clusterSelector.matchExpressions[0].key` into steps.
#[must_use]
pub fn parse_path(path: &str) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            steps.push(Step::Key(key));
        }
        while let Some((index, after)) = rest.split_once(']') {
            if let Ok(index) = index.parse() {
                steps.push(Step::Index(index));
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    steps
}

/// The 1-based line (within `text`) of the deepest step of `path` that can be found in
/// block-style YAML; `None` when not even the first step is found (flow style, say).
#[must_use]
pub fn locate(text: &str, path: &[Step<'_>]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    // The block being searched: lines [from, to).
    let (mut from, mut to) = (0, lines.len());
    let mut found = None;
    for step in path {
        let hit = match step {
            Step::Key(key) => find_key(&lines, from, to, key),
            Step::Index(index) => find_item(&lines, from, to, *index),
        };
        let Some((line, column)) = hit else { break };
        found = Some(line + 1);
        let is_key = matches!(step, Step::Key(_));
        to = block_end(&lines, line, column, is_key);
        from = if is_key { line + 1 } else { line };
    }
    found
}

/// First line in [from, to) holding `key:` at the block's shallowest key column; returns
/// the line and the key's column.
fn find_key(lines: &[&str], from: usize, to: usize, key: &str) -> Option<(usize, usize)> {
    let mut block_column = None;
    for (index, line) in lines.iter().enumerate().take(to).skip(from) {
        let Some((column, content)) = key_content(line) else {
            continue;
        };
        let block = *block_column.get_or_insert(column);
        if column < block {
            break;
        }
        if column == block
            && (content.starts_with(&format!("{key}:"))
                || content.starts_with(&format!("\"{key}\":")))
        {
            return Some((index, column));
        }
    }
    None
}

/// The line of the `index`-th `- ` item in [from, to), and the column of its dash.
fn find_item(lines: &[&str], from: usize, to: usize, index: usize) -> Option<(usize, usize)> {
    let mut dash_column = None;
    let mut seen = 0;
    for (number, line) in lines.iter().enumerate().take(to).skip(from) {
        let trimmed = line.trim_start();
        let column = line.len() - trimmed.len();
        if !(trimmed.starts_with("- ") || trimmed == "-") {
            continue;
        }
        if *dash_column.get_or_insert(column) != column {
            continue;
        }
        if seen == index {
            return Some((number, column));
        }
        seen += 1;
    }
    None
}

/// Column and text of a line's first key, looking through `- ` item markers; `None` for
/// blank and comment lines.
fn key_content(line: &str) -> Option<(usize, &str)> {
    let mut rest = line;
    let mut column = 0;
    loop {
        let trimmed = rest.trim_start();
        column += rest.len() - trimmed.len();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return None;
        }
        match trimmed.strip_prefix("- ") {
            Some(after) => {
                column += 2;
                rest = after;
            }
            None => return Some((column, trimmed)),
        }
    }
}

/// The end (exclusive) of the block that starts at `line` with a key or dash at `column`:
/// the next non-blank line indented no deeper than `column` (a sibling or an ancestor).
/// A key's sequence may sit at the key's own column (`key:` then `- item`), as kubectl
/// writes it, so such dashes do not end a key's block.
fn block_end(lines: &[&str], line: usize, column: usize, is_key: bool) -> usize {
    lines
        .iter()
        .enumerate()
        .skip(line + 1)
        .find(|(_, l)| {
            let trimmed = l.trim_start();
            let indent = l.len() - trimmed.len();
            let item_of_key = is_key && indent == column && trimmed.starts_with('-');
            !trimmed.is_empty() && !trimmed.starts_with('#') && indent <= column && !item_of_key
        })
        .map_or(lines.len(), |(index, _)| index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_keeps_their_lines() {
        let file = "# header\na: 1\n---\nb: 2\n--- \n\n---\n# only a comment\n---\nc: |\n  text\n...\n--- d: 4\n";
        let documents = split(file);
        let summary: Vec<_> = documents
            .iter()
            .map(|d| (d.index, d.first_line, d.text.trim()))
            .collect();
        assert_eq!(
            summary,
            [
                (1, 1, "# header\na: 1"),
                (2, 4, "b: 2"),
                (3, 10, "c: |\n  text"),
                (4, 13, "d: 4")
            ]
        );
    }

    #[test]
    fn parses_field_paths() {
        assert_eq!(
            parse_path("spec.clusterSelector.matchExpressions[1].values[0]"),
            [
                Step::Key("spec"),
                Step::Key("clusterSelector"),
                Step::Key("matchExpressions"),
                Step::Index(1),
                Step::Key("values"),
                Step::Index(0)
            ]
        );
    }

    #[test]
    fn locates_fields_in_block_yaml() {
        let text = "\
apiVersion: capi.weave.works/v1alpha1
kind: SecretSync
metadata:
  name: registry
spec:
  # which clusters
  clusterSelector:
    matchExpressions:
      - key: environment
        operator: In
        values: [production]
      - key: region
        operator: Exists
  secretRef:
    name: registry
";
        let at = |path: &str| locate(text, &parse_path(path));
        assert_eq!(at("metadata.name"), Some(4));
        assert_eq!(at("spec"), Some(5));
        assert_eq!(at("spec.clusterSelector"), Some(7));
        assert_eq!(
            at("spec.clusterSelector.matchExpressions[0].operator"),
            Some(10)
        );
        assert_eq!(at("spec.clusterSelector.matchExpressions[1].key"), Some(12));
        assert_eq!(
            at("spec.clusterSelector.matchExpressions[1].operator"),
            Some(13)
        );
        assert_eq!(at("spec.secretRef.name"), Some(15));
        // The deepest step found: `spec.targetNamespace` is missing, `spec` is not.
        assert_eq!(at("spec.targetNamespace"), Some(5));
        assert_eq!(at("status"), None);
    }

    #[test]
    fn locates_items_written_at_their_key_column() {
        let text = "spec:\n  clusterSelector:\n    matchExpressions:\n    - key: a\n      operator: In\n    - key: b\n      operator: Exists\n  secretRef:\n    name: x\n";
        let at = |path: &str| locate(text, &parse_path(path));
        assert_eq!(
            at("spec.clusterSelector.matchExpressions[1].operator"),
            Some(7)
        );
        assert_eq!(at("spec.secretRef.name"), Some(9));
    }
}
