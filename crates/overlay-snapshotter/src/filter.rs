//! containerd's filter syntax, as `List` receives it.
//!
//! ```text
//! filters  := filter*                       any one of them matches (OR)
//! filter   := selector ("," selector)*      all of them match (AND)
//! selector := fieldpath [op value]          no op: the field is present
//! fieldpath:= field ("." field)*            field: [A-Za-z0-9_]+ or "quoted"
//! op       := "==" | "!=" | "~="            ~= is a regular expression
//! value    := unquoted run | "quoted"       ~= also takes /re/ and |re|
//! ```
//!
//! A snapshot has the fields `kind` (`active`, `view`, `committed`),
//! `name`, `parent` (present and empty for none) and `labels.KEY`.
//! Quoted strings take Go's escapes (`\n`, `\x41`, `\u00e9`, `\"`...).

use std::fmt;

use regex::Regex;

/// A filter that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter {input:?}: {reason} at byte {pos}")]
pub struct FilterError {
    /// The filter as given.
    pub input: String,
    /// Where parsing stopped.
    pub pos: usize,
    /// What was wrong there.
    pub reason: String,
}

/// What a filter asks of a field.
#[derive(Debug, Clone)]
enum Op {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

#[derive(Debug, Clone)]
struct Selector {
    path: Vec<String>,
    op: Op,
}

/// One filter string: selectors that must all match.
#[derive(Debug, Clone)]
pub struct Filter {
    selectors: Vec<Selector>,
}

/// Several filter strings, any of which may match; none matches all.
#[derive(Debug, Clone, Default)]
pub struct Filters(Vec<Filter>);

/// What a filter can ask of an item: the value of a field path, if the
/// item has that field.
pub trait Fields {
    /// The field's value, `None` when absent.
    fn field(&self, path: &[String]) -> Option<&str>;
}

impl Filters {
    /// Parses every filter string (none: everything matches).
    ///
    /// # Errors
    ///
    /// The first filter that does not parse.
    pub fn parse<S: AsRef<str>>(filters: &[S]) -> Result<Self, FilterError> {
        filters
            .iter()
            .map(|f| Filter::parse(f.as_ref()))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Does `item` pass?
    pub fn matches(&self, item: &dyn Fields) -> bool {
        self.0.is_empty() || self.0.iter().any(|f| f.matches(item))
    }
}

impl Filter {
    /// Parses one filter string.
    ///
    /// # Errors
    ///
    /// The string is not in containerd's filter syntax.
    pub fn parse(input: &str) -> Result<Self, FilterError> {
        Parser {
            lexer: Lexer::new(input),
        }
        .filter()
    }

    /// Do all of this filter's selectors match `item`?
    pub fn matches(&self, item: &dyn Fields) -> bool {
        self.selectors.iter().all(|s| {
            let value = item.field(&s.path);
            match &s.op {
                Op::Present => value.is_some(),
                Op::Equal(v) => value == Some(v.as_str()),
                // containerd: an absent field reads as "".
                Op::NotEqual(v) => value.unwrap_or("") != v,
                Op::Matches(re) => re.is_match(value.unwrap_or("")),
            }
        })
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.selectors.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&s.path.join("."))?;
            match &s.op {
                Op::Present => {}
                Op::Equal(v) => write!(f, "=={v:?}")?,
                Op::NotEqual(v) => write!(f, "!={v:?}")?,
                Op::Matches(re) => write!(f, "~={:?}", re.as_str())?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Eof,
    /// A quoted string, quotes included.
    Quoted,
    Value,
    Field,
    /// `,` or `.`.
    Separator(char),
    Operator,
    Illegal(&'static str),
    Other(char),
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    /// The next plain token is a value (an operator came before it).
    value: bool,
}

fn is_field_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

fn is_value_char(c: char) -> bool {
    c != ',' && !c.is_whitespace() && !c.is_control()
}

impl<'a> Lexer<'a> {
    fn new(input: &'a str) -> Self {
        Self {
            input,
            pos: 0,
            value: false,
        }
    }

    fn peek_char(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) {
        while self.peek_char().is_some_and(&f) {
            self.bump();
        }
    }

    /// The next token, where it starts, and its text.
    fn next(&mut self) -> (usize, Token, &'a str) {
        self.take_while(char::is_whitespace);
        let start = self.pos;
        let Some(c) = self.bump() else {
            return (start, Token::Eof, "");
        };
        let tok = match c {
            '\0' => Token::Illegal("unexpected null"),
            '"' | '/' | '|' => self.quoted(c),
            ',' | '.' => {
                self.value = false;
                Token::Separator(c)
            }
            '=' | '!' | '~' => {
                self.take_while(|c| matches!(c, '=' | '!' | '~'));
                self.value = true;
                Token::Operator
            }
            _ if self.value => {
                self.take_while(is_value_char);
                self.value = false;
                Token::Value
            }
            _ if is_field_char(c) => {
                self.take_while(is_field_char);
                Token::Field
            }
            _ => Token::Other(c),
        };
        (start, tok, &self.input[start..self.pos])
    }

    fn peek(&mut self) -> Token {
        let (pos, value) = (self.pos, self.value);
        let (_, tok, _) = self.next();
        self.pos = pos;
        self.value = value;
        tok
    }

    fn quoted(&mut self, quote: char) -> Token {
        loop {
            match self.bump() {
                None | Some('\n') => return Token::Illegal("quoted literal not terminated"),
                Some('\\') => {
                    self.bump();
                }
                Some(c) if c == quote => return Token::Quoted,
                Some(_) => {}
            }
        }
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
}

impl Parser<'_> {
    fn err(&self, pos: usize, reason: impl Into<String>) -> FilterError {
        FilterError {
            input: self.lexer.input.to_owned(),
            pos,
            reason: reason.into(),
        }
    }

    fn filter(mut self) -> Result<Filter, FilterError> {
        let mut selectors = vec![self.selector()?];
        loop {
            let (pos, tok, text) = self.lexer.next();
            match tok {
                Token::Eof => return Ok(Filter { selectors }),
                Token::Separator(',') => selectors.push(self.selector()?),
                _ => return Err(self.err(pos, format!("unexpected input {text:?}"))),
            }
        }
    }

    fn selector(&mut self) -> Result<Selector, FilterError> {
        let mut path = vec![self.field()?];
        while self.lexer.peek() == Token::Separator('.') {
            self.lexer.next();
            path.push(self.field()?);
        }
        if matches!(self.lexer.peek(), Token::Eof | Token::Separator(_)) {
            return Ok(Selector { path, op: Op::Present });
        }
        let (pos, tok, text) = self.lexer.next();
        let op = match (tok, text) {
            (Token::Operator, "==" | "!=" | "~=") => text,
            (Token::Operator, _) => return Err(self.err(pos, format!("unsupported operator {text:?}"))),
            _ => return Err(self.err(pos, r#"expected an operator ("=="|"!="|"~=")"#)),
        };
        let value = self.value(op == "~=")?;
        let op = match op {
            "==" => Op::Equal(value),
            "!=" => Op::NotEqual(value),
            _ => Op::Matches(
                Regex::new(&value).map_err(|e| self.err(pos, format!("bad regular expression {value:?}: {e}")))?,
            ),
        };
        Ok(Selector { path, op })
    }

    fn field(&mut self) -> Result<String, FilterError> {
        let (pos, tok, text) = self.lexer.next();
        match tok {
            Token::Field => Ok(text.to_owned()),
            Token::Quoted if text.starts_with('"') => unquote(text).ok_or_else(|| self.err(pos, "bad quoting")),
            Token::Illegal(why) => Err(self.err(pos, why)),
            _ => Err(self.err(pos, "expected a field or a quoted string")),
        }
    }

    fn value(&mut self, regex: bool) -> Result<String, FilterError> {
        let (pos, tok, text) = self.lexer.next();
        match tok {
            Token::Value | Token::Field => Ok(text.to_owned()),
            Token::Quoted if regex || text.starts_with('"') => {
                unquote(text).ok_or_else(|| self.err(pos, "bad quoting"))
            }
            Token::Quoted => Err(self.err(pos, "only ~= takes /.../ or |...| quotes")),
            Token::Illegal(why) => Err(self.err(pos, why)),
            Token::Eof => Err(self.err(pos, "a value is missing")),
            _ => Err(self.err(pos, "expected a value or a quoted string")),
        }
    }
}

/// The text between the quotes of `s`, Go escapes resolved.
fn unquote(s: &str) -> Option<String> {
    let quote = s.chars().next()?;
    let inner = s.strip_prefix(quote)?.strip_suffix(quote)?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == quote {
            return None;
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next()?;
        let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Option<u32> {
            (0..n).try_fold(0u32, |acc, _| Some(acc * 16 + chars.next()?.to_digit(16)?))
        };
        out.push(match e {
            'a' => '\x07',
            'b' => '\x08',
            'f' => '\x0c',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\x0b',
            '\\' => '\\',
            'x' => char::from_u32(hex(&mut chars, 2)?)?,
            'u' => char::from_u32(hex(&mut chars, 4)?)?,
            'U' => char::from_u32(hex(&mut chars, 8)?)?,
            '0'..='7' => {
                let d = |c: Option<char>| c.and_then(|c| c.to_digit(8));
                let v = e.to_digit(8)? * 64 + d(chars.next())? * 8 + d(chars.next())?;
                char::from_u32(v).filter(|_| v <= 0xff)?
            }
            c if c == quote => c,
            _ => return None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    struct Item(BTreeMap<&'static str, &'static str>);

    impl Fields for Item {
        fn field(&self, path: &[String]) -> Option<&str> {
            self.0.get(path.join(".").as_str()).copied()
        }
    }

    fn item() -> Item {
        Item(BTreeMap::from([
            ("kind", "active"),
            ("name", "default/3/extract-1 sha256:ab"),
            ("parent", ""),
            ("labels.containerd.io/gc.root", "x"),
            ("labels.l", "v,1"),
        ]))
    }

    fn ok(f: &str) -> bool {
        Filters::parse(&[f]).unwrap_or_else(|e| panic!("{e}")).matches(&item())
    }

    #[test]
    fn containerd_forms() {
        assert!(ok("kind==active"));
        assert!(!ok("kind==committed"));
        assert!(ok("kind!=view"));
        assert!(ok("parent"));
        assert!(ok(r#"parent=="""#));
        assert!(!ok(r#"parent!="""#));
        assert!(ok(r#"labels."containerd.io/gc.root"==x"#));
        assert!(ok(r#"labels."containerd.io/gc.root""#));
        assert!(!ok("labels.missing"));
        assert!(ok(r#"labels.l=="v,1""#));
        assert!(ok(r#"name=="default/3/extract-1 sha256:ab""#));
        assert!(ok(r#"name~=/extract-[0-9]+ sha256/"#));
        assert!(ok("name~=extract"));
        assert!(ok("kind==active,parent"));
        assert!(!ok("kind==active,labels.missing"));
        assert!(ok("  kind == active , name ~= |^default/| "));
        assert!(ok(r#"name=="default\x2f3/extract-1 sha256:ab""#));
    }

    #[test]
    fn several_filters_are_or() {
        let f = Filters::parse(&["kind==view", "kind==active"]).expect("parses");
        assert!(f.matches(&item()));
        let f = Filters::parse(&["kind==view", "name==x"]).expect("parses");
        assert!(!f.matches(&item()));
        assert!(Filters::parse::<&str>(&[]).expect("parses").matches(&item()));
    }

    #[test]
    fn bad_filters_are_named() {
        for bad in [
            "",
            "kind==",
            "kind=active",
            "kind===active",
            "kind==active,",
            "kind==/active/",
            r#"kind=="active"#,
            "name~=\"(\"",
            "labels.\"a\\q\"",
            "kind==a b",
            "\0",
            ".kind",
        ] {
            let e = Filter::parse(bad).expect_err(bad);
            assert_eq!(e.input, bad);
            assert!(e.to_string().contains("filter"), "{e}");
        }
    }
}
