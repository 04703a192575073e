//! Label and field selectors, parsed and matched as upstream does.
//!
//! * [`LabelSelector`] is `k8s.io/apimachinery/pkg/labels` `Parse`: the same
//!   lexer and recursive-descent parser, so the same strings are accepted and
//!   the same error texts come back (`unable to parse requirement: ...`). The
//!   API answers a bad `labelSelector` with a 400 carrying that text.
//!   [`label_selector_from_json`] is `metav1.LabelSelectorAsSelector` for the
//!   `matchLabels`/`matchExpressions` objects inside specs.
//! * [`FieldSelector`] is `k8s.io/apimachinery/pkg/fields` `ParseSelector`
//!   plus the per-kind field label conversion functions and selectable field
//!   sets of Kubernetes 1.33 (`pkg/apis/*/v*/conversion.go`,
//!   `pkg/registry/*/strategy.go`), which decide which fields a kind can be
//!   selected by and what each field's value is.

use std::fmt;

use serde_json::{Map, Value};

use crate::names;

// ---------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------

/// A label selector operator (upstream `selection.Operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    Exists,
    DoesNotExist,
}

impl Operator {
    /// Upstream's spelling (`in`, `notin`, `=`, `==`, `!=`, `gt`, `lt`,
    /// `exists`, `!`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
        }
    }
}

/// The binary operators, as upstream's parser lists them in its errors.
const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

/// One term of a label selector: a key, an operator and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Upstream `NewRequirement`: validates the key (qualified name), the
    /// number of values for the operator, integer values for `gt`/`lt`, and
    /// every value (label value). The error is upstream's aggregate text, with
    /// field paths `key`, `values`, `values[i]` and `values[i][key]`.
    ///
    /// An empty `values` is reported as Go's `[]string(nil)`, which is what
    /// upstream shows for a `matchExpressions` entry without values.
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Self, String> {
        let key = key.into();
        let mut errs = Vec::new();
        if let Some(e) = label_key_error(&key, "key") {
            errs.push(e);
        }
        match operator {
            Operator::In | Operator::NotIn => {
                if values.is_empty() {
                    errs.push(format!(
                        "values: Invalid value: {}: for 'in', 'notin' operators, values set can't be empty",
                        go_string_slice(&values)
                    ));
                }
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals => {
                if values.len() != 1 {
                    errs.push(format!(
                        "values: Invalid value: {}: exact-match compatibility requires one single value",
                        go_string_slice(&values)
                    ));
                }
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    errs.push(format!(
                        "values: Invalid value: {}: values set must be empty for exists and does not exist",
                        go_string_slice(&values)
                    ));
                }
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(format!(
                        "values: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value is required",
                        go_string_slice(&values)
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if parse_go_int(v).is_none() {
                        errs.push(format!(
                            "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                            go_quote(v)
                        ));
                    }
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            let msgs = names::is_valid_label_value(v);
            if !msgs.is_empty() {
                errs.push(format!(
                    "values[{i}][{key}]: Invalid value: {}: {}",
                    go_quote(v),
                    msgs.join("; ")
                ));
            }
        }
        if errs.is_empty() {
            Ok(Requirement {
                key,
                operator,
                values,
            })
        } else {
            Err(aggregate(errs))
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values in the order given (the parser gives them sorted and
    /// without duplicates).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn has_value(&self, v: &str) -> bool {
        self.values.iter().any(|x| x == v)
    }

    /// Upstream `Requirement.Matches`. `!=` and `notin` match when the key is
    /// absent; `gt`/`lt` need the key present with an integer value.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let got = labels.and_then(|m| m.get(&self.key));
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                got.is_some_and(|v| self.has_value(&label_str(v)))
            }
            Operator::NotIn | Operator::NotEquals => {
                got.is_none_or(|v| !self.has_value(&label_str(v)))
            }
            Operator::Exists => got.is_some(),
            Operator::DoesNotExist => got.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(have) = got.and_then(|v| parse_go_int(&label_str(v))) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Some(want) = parse_go_int(want) else {
                    return false;
                };
                match self.operator {
                    Operator::GreaterThan => have > want,
                    _ => have < want,
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    /// Upstream `Requirement.String`: `!k`, `k`, `k=v`, `k==v`, `k!=v`,
    /// `k in (a,b)`, `k notin (a)`, `k>1`, `k<1`; several values are printed
    /// sorted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = match self.operator {
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Exists => return f.write_str(&self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        f.write_str(&self.key)?;
        f.write_str(sep)?;
        if set {
            f.write_str("(")?;
        }
        if let [one] = self.values.as_slice() {
            f.write_str(one)?;
        } else {
            let mut sorted: Vec<&str> = self.values.iter().map(String::as_str).collect();
            sorted.sort_unstable();
            f.write_str(&sorted.join(","))?;
        }
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed label selector: the AND of its requirements, kept sorted by key.
///
/// The default value selects everything. [`LabelSelector::nothing`] (what a
/// `null` `metav1.LabelSelector` converts to) selects nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// Selects every object (`labels.Everything()`).
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// Selects no object (`labels.Nothing()`): not empty, matches nothing,
    /// prints as "".
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Upstream `labels.Parse`. Whitespace (space, tab, CR, LF) between tokens
    /// is ignored; the error text is upstream's.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parser = Parser::new(s);
        let mut requirements = parser.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// `labels.SelectorFromSet`: `key=value` for every entry, not validated.
    /// Non-string values compare by their JSON text.
    pub fn from_labels(labels: &Map<String, Value>) -> Self {
        let mut requirements: Vec<Requirement> = labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![label_str(v).into_owned()],
            })
            .collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector {
            requirements,
            nothing: false,
        }
    }

    /// Adds a requirement, keeping the requirements sorted by key.
    pub fn add(&mut self, requirement: Requirement) {
        self.requirements.push(requirement);
        self.requirements.sort_by(|a, b| a.key.cmp(&b.key));
    }

    /// True when the selector does not restrict anything (`Empty()`).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True for [`LabelSelector::nothing`].
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether an object with these labels (None: no labels) is selected.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Upstream `RequiresExactMatch`: the single value the first requirement
    /// on `key` demands (`=`, `==`, or `in` with one value), if any.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [one]) => Some(one),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    /// Upstream's canonical string: requirements sorted by key, joined by
    /// `,` without spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Converts a `metav1.LabelSelector` object (`matchLabels` and
/// `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`) as
/// upstream `LabelSelectorAsSelector` does: `null` selects nothing, `{}`
/// selects everything, and invalid keys, values or operators give upstream's
/// error text (`"Gt" is not a valid label selector operator`, `key: Invalid
/// value: ...`). JSON of the wrong shape, which the typed upstream API could
/// not decode, gives an error naming the field.
pub fn label_selector_from_json(sel: &Value) -> Result<LabelSelector, String> {
    let obj = match sel {
        Value::Null => return Ok(LabelSelector::nothing()),
        Value::Object(o) => o,
        other => return Err(format!("label selector must be an object, not {other}")),
    };
    let match_labels = match obj.get("matchLabels") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err("matchLabels: must be a map of strings".to_string()),
    };
    let match_expressions = match obj.get("matchExpressions") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a),
        Some(_) => return Err("matchExpressions: must be a list".to_string()),
    };
    let n_labels = match_labels.map_or(0, Map::len);
    let n_exprs = match_expressions.map_or(0, Vec::len);
    if n_labels + n_exprs == 0 {
        return Ok(LabelSelector::everything());
    }
    let mut requirements = Vec::with_capacity(n_labels + n_exprs);
    for (k, v) in match_labels.into_iter().flatten() {
        let Some(v) = v.as_str() else {
            return Err(format!("matchLabels[{k}]: must be a string"));
        };
        requirements.push(Requirement::new(
            k.as_str(),
            Operator::Equals,
            vec![v.to_string()],
        )?);
    }
    for (i, expr) in match_expressions.into_iter().flatten().enumerate() {
        let Some(expr) = expr.as_object() else {
            return Err(format!("matchExpressions[{i}]: must be an object"));
        };
        let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
        let op_name = expr
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let op = match op_name {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => {
                return Err(format!(
                    "{} is not a valid label selector operator",
                    go_quote(other)
                ))
            }
        };
        let values = match expr.get("values") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => {
                let mut values = Vec::with_capacity(a.len());
                for v in a {
                    let Some(v) = v.as_str() else {
                        return Err(format!("matchExpressions[{i}].values: must be strings"));
                    };
                    values.push(v.to_string());
                }
                values
            }
            Some(_) => return Err(format!("matchExpressions[{i}].values: must be a list")),
        };
        requirements.push(Requirement::new(key, op, values)?);
    }
    requirements.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(LabelSelector {
        requirements,
        nothing: false,
    })
}

/// A label's value as text: labels are strings; anything else (which
/// validation rejects on write) compares by its JSON text, `null` as "".
fn label_str(v: &Value) -> std::borrow::Cow<'_, str> {
    match v {
        Value::String(s) => std::borrow::Cow::Borrowed(s),
        Value::Null => std::borrow::Cow::Borrowed(""),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

/// Go `strconv.ParseInt(s, 10, 64)`: optional sign, decimal digits, no
/// spaces or underscores; `i64::from_str` accepts exactly that.
fn parse_go_int(s: &str) -> Option<i64> {
    s.parse::<i64>().ok()
}

/// `validateLabelKey`: `<path>: Invalid value: "<key>": <messages; joined>`.
fn label_key_error(key: &str, path: &str) -> Option<String> {
    let msgs = names::is_qualified_name(key);
    if msgs.is_empty() {
        None
    } else {
        Some(format!(
            "{path}: Invalid value: {}: {}",
            go_quote(key),
            msgs.join("; ")
        ))
    }
}

/// `field.ErrorList.ToAggregate().Error()`: duplicates dropped, one error
/// printed alone, several as `[a, b]`.
fn aggregate(errs: Vec<String>) -> String {
    let mut unique: Vec<String> = Vec::with_capacity(errs.len());
    for e in errs {
        if !unique.contains(&e) {
            unique.push(e);
        }
    }
    if unique.len() == 1 {
        unique.swap_remove(0)
    } else {
        format!("[{}]", unique.join(", "))
    }
}

/// Go's `%#v` of a `[]string`.
fn go_string_slice(values: &[String]) -> String {
    if values.is_empty() {
        return "[]string(nil)".to_string();
    }
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// Go's `strconv.Quote` (`%q`): double quotes, Go escapes for `"`, `\` and
/// control characters, other printable characters as they are.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if !go_is_print(c) => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint` for characters beyond ASCII
/// control: controls, non-ASCII spaces and the common invisible format
/// characters are not printable.
fn go_is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(
        c,
        '\u{ad}'
            | '\u{600}'..='\u{605}'
            | '\u{61c}'
            | '\u{6dd}'
            | '\u{70f}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{e000}'..='\u{f8ff}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{f0000}'..
    )
}

// --- the label selector lexer and parser (upstream's, token for token) ---

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

/// The literal tokens (upstream `string2token`).
fn literal_token(s: &[u8]) -> Option<Token> {
    Some(match s {
        b")" => Token::ClosedPar,
        b"," => Token::Comma,
        b"!" => Token::DoesNotExist,
        b"==" => Token::DoubleEquals,
        b"=" => Token::Equals,
        b">" => Token::GreaterThan,
        b"in" => Token::In,
        b"<" => Token::LessThan,
        b"!=" => Token::NotEquals,
        b"notin" => Token::NotIn,
        b"(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(ch: u8) -> bool {
    matches!(ch, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(ch: u8) -> bool {
    matches!(ch, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Upstream's byte lexer. A NUL byte reads like the end of the input, as it
/// does upstream.
struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn read(&mut self) -> u8 {
        match self.s.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0,
        }
    }

    fn unread(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    fn scan_id_or_keyword(&mut self) -> (Token, String) {
        let mut buffer = Vec::new();
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if is_special_symbol(ch) || is_whitespace(ch) {
                self.unread();
                break;
            }
            buffer.push(ch);
        }
        let tok = literal_token(&buffer).unwrap_or(Token::Identifier);
        (tok, String::from_utf8_lossy(&buffer).into_owned())
    }

    fn scan_special_symbol(&mut self) -> (Token, String) {
        let mut last: Option<(Token, usize)> = None;
        let mut buffer = Vec::new();
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if is_special_symbol(ch) {
                buffer.push(ch);
                if let Some(tok) = literal_token(&buffer) {
                    last = Some((tok, buffer.len()));
                } else if last.is_some() {
                    self.unread();
                    break;
                }
            } else {
                self.unread();
                break;
            }
        }
        match last {
            Some((tok, len)) => (tok, String::from_utf8_lossy(&buffer[..len]).into_owned()),
            None => (
                Token::Error,
                format!(
                    "error expected: keyword found '{}'",
                    String::from_utf8_lossy(&buffer)
                ),
            ),
        }
    }

    fn lex(&mut self) -> (Token, String) {
        let mut ch = self.read();
        while is_whitespace(ch) {
            ch = self.read();
        }
        if ch == 0 {
            (Token::EndOfString, String::new())
        } else if is_special_symbol(ch) {
            self.unread();
            self.scan_special_symbol()
        } else {
            self.unread();
            self.scan_id_or_keyword()
        }
    }
}

/// Whether `in`/`notin` are operators (after a key) or plain identifiers
/// (values, keys).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

impl Parser {
    fn new(s: &str) -> Self {
        let mut lexer = Lexer {
            s: s.as_bytes(),
            pos: 0,
        };
        let mut items = Vec::new();
        loop {
            let (tok, lit) = lexer.lex();
            items.push((tok, lit));
            if tok == Token::EndOfString {
                break;
            }
        }
        Parser { items, position: 0 }
    }

    fn at(&self, position: usize, context: Context) -> (Token, String) {
        let (tok, lit) = self
            .items
            .get(position)
            .cloned()
            .unwrap_or((Token::EndOfString, String::new()));
        let tok = match (context, tok) {
            (Context::Values, Token::In | Token::NotIn) => Token::Identifier,
            (_, tok) => tok,
        };
        (tok, lit)
    }

    fn lookahead(&self, context: Context) -> (Token, String) {
        self.at(self.position, context)
    }

    fn consume(&mut self, context: Context) -> (Token, String) {
        let item = self.at(self.position, context);
        self.position += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => return Err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ))
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, operator) = self.parse_key_and_infer_operator()?;
        if let Some(op @ (Operator::Exists | Operator::DoesNotExist)) = operator {
            return Requirement::new(key, op, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(key, operator, values)
    }

    /// `[!] KEY`, inferring `exists` when the key stands alone.
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let mut operator = None;
        let (mut tok, mut literal) = self.consume(Context::Values);
        if tok == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (tok, literal) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(format!("found '{literal}', expected: identifier"));
        }
        // Upstream parses without a field path, so the path prints as <nil>.
        if let Some(e) = label_key_error(&literal, "<nil>") {
            return Err(e);
        }
        let (next, _) = self.lookahead(Context::Values);
        if (next == Token::EndOfString || next == Token::Comma) && operator.is_none() {
            operator = Some(Operator::Exists);
        }
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => return Err(format!("found '{lit}', expected: {BINARY_OPERATORS}")),
        })
    }

    /// `( VALUE, ... )`; the result is sorted and without duplicates, as
    /// upstream's string set gives it.
    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let (tok, _) = self.consume(Context::Values);
                if tok != Token::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut set = std::collections::BTreeSet::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    set.insert(lit);
                    let (tok2, lit2) = self.lookahead(Context::Values);
                    match tok2 {
                        Token::Comma => continue,
                        Token::ClosedPar => break,
                        _ => return Err(format!("found '{lit2}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    // "(," and ",)" and ",," each stand for an empty value.
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    let (tok2, _) = self.lookahead(Context::Values);
                    if tok2 == Token::ClosedPar {
                        set.insert(String::new());
                        break;
                    }
                    if tok2 == Token::Comma {
                        self.consume(Context::Values);
                        set.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
        Ok(set.into_iter().collect())
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        let (tok, _) = self.lookahead(Context::Values);
        if tok == Token::EndOfString || tok == Token::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Token::Identifier {
            Ok(vec![lit])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

// ---------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------

/// `=` (also spelled `==`) or `!=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    Equals,
    NotEquals,
}

/// One term of a field selector. The value is unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    pub value: String,
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_field_value(&self.value))
    }
}

/// A parsed field selector: the AND of its terms, in upstream's order (the
/// raw terms sorted as strings). The default value selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Upstream `fields.ParseSelector`: terms separated by unescaped `,`,
    /// each `field=value`, `field==value` or `field!=value`. In values, `\,`,
    /// `\=` and `\\` stand for `,`, `=` and `\`; any other escape, and an
    /// unescaped `,` or `=`, is an error (upstream's texts, e.g.
    /// `invalid field selector: invalid escape sequence: \!`). Empty terms
    /// are skipped; field names are not checked here (see
    /// [`FieldSelector::check_supported`]).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = split_field_terms(s);
        parts.sort_unstable();
        let mut terms = Vec::with_capacity(parts.len());
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((field, operator, raw)) = split_field_term(part) else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            };
            terms.push(FieldRequirement {
                field: field.to_string(),
                operator,
                value: unescape_field_value(raw)?,
            });
        }
        Ok(FieldSelector { terms })
    }

    /// True when the selector does not restrict anything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn terms(&self) -> &[FieldRequirement] {
        &self.terms
    }

    /// The value an `=` term demands for `field` (as written, before any
    /// field label conversion), if any: lets a store use an index for
    /// `metadata.name` or `spec.nodeName`.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && t.operator == FieldOperator::Equals)
            .map(|t| t.value.as_str())
    }

    /// Whether every field label is one the built-in resource `resource`
    /// (plural) of API group `group` ("" for core) can be selected by, as
    /// upstream 1.33's field label conversion functions decide; the error is
    /// the first unsupported term's, with upstream's text (`field label not
    /// supported: spec.foo`, or for kinds without a conversion function
    /// `"spec.foo" is not a known field selector: only "metadata.name",
    /// "metadata.namespace"`). The API answers it with a 400. Custom resources
    /// use [`FieldSelector::check_supported_custom`].
    pub fn check_supported(&self, group: &str, resource: &str) -> Result<(), String> {
        for t in &self.terms {
            convert_field_label(group, resource, &t.field)?;
        }
        Ok(())
    }

    /// Whether the object `obj` (stored JSON) of a built-in resource is
    /// selected. Field values are strings (`"true"`, `"3"`); a missing value
    /// is "". Legacy aliases are honoured (`spec.host` for pods, `regarding.*`
    /// and `reportingController` for `events.k8s.io` events). A field the
    /// resource does not support compares as "" (callers reject those first
    /// with [`FieldSelector::check_supported`]).
    pub fn matches(&self, group: &str, resource: &str, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            let have = match convert_field_label(group, resource, &t.field) {
                Ok(label) => selectable_field(group, resource, obj, label).unwrap_or_default(),
                Err(_) => String::new(),
            };
            match t.operator {
                FieldOperator::Equals => have == t.value,
                FieldOperator::NotEquals => have != t.value,
            }
        })
    }

    /// [`FieldSelector::check_supported`] for a custom resource:
    /// `metadata.name`, `metadata.namespace` when namespaced, and the
    /// CRD version's `selectableFields` (their `jsonPath` without the leading
    /// `.`, e.g. `spec.color`); otherwise `field label not supported: <f>`.
    pub fn check_supported_custom(
        &self,
        namespaced: bool,
        selectable_fields: &[&str],
    ) -> Result<(), String> {
        for t in &self.terms {
            let f = t.field.as_str();
            let ok = f == "metadata.name"
                || (namespaced && f == "metadata.namespace")
                || selectable_fields
                    .iter()
                    .any(|s| s.trim_start_matches('.') == f);
            if !ok {
                return Err(format!("field label not supported: {f}"));
            }
        }
        Ok(())
    }

    /// [`FieldSelector::matches`] for a custom resource: each field is the
    /// dotted path into the object; strings compare as they are, booleans as
    /// `true`/`false`, numbers in decimal, anything missing as "".
    pub fn matches_custom(&self, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            let have = scalar_text(path_get(obj, &t.field));
            match t.operator {
                FieldOperator::Equals => have == t.value,
                FieldOperator::NotEquals => have != t.value,
            }
        })
    }
}

impl fmt::Display for FieldSelector {
    /// Upstream's string: `f=v` / `f!=v` (`==` prints as `=`), values
    /// escaped, joined by `,`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

/// Upstream `fields.EscapeValue`: `\` -> `\\`, `,` -> `\,`, `=` -> `\=`.
pub fn escape_field_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Upstream `fields.UnescapeValue`.
pub fn unescape_field_value(s: &str) -> Result<String, String> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                ));
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Upstream prints the rune with %v: its code point in decimal.
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                ))
            }
            c => out.push(c),
        }
    }
    if in_slash {
        return Err("invalid field selector: invalid escape sequence: \\".to_string());
    }
    Ok(out)
}

/// Splits on commas not preceded by a backslash escape.
fn split_field_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Finds the first operator (`!=`, then `==`, then `=` at each position).
fn split_field_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, operator) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], operator, value));
            }
        }
    }
    None
}

const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
];
const NODE_FIELDS: &[&str] = &["metadata.name", "spec.unschedulable"];
const REPLICATION_CONTROLLER_FIELDS: &[&str] =
    &["metadata.name", "metadata.namespace", "status.replicas"];
const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];
const NAMESPACE_FIELDS: &[&str] = &["status.phase", "metadata.name"];
const SECRET_FIELDS: &[&str] = &["type", "metadata.namespace", "metadata.name"];
const SERVICE_FIELDS: &[&str] = &[
    "metadata.namespace",
    "metadata.name",
    "spec.clusterIP",
    "spec.type",
];
const JOB_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.successful"];
const SIGNER_FIELDS: &[&str] = &["metadata.name", "spec.signerName"];
const RESOURCE_SLICE_FIELDS: &[&str] = &["metadata.name", "spec.nodeName", "spec.driver"];
/// events.k8s.io field labels and the core Event fields they select.
const EVENTS_V1_FIELDS: &[(&str, &str)] = &[
    ("reason", "reason"),
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    (
        "regarding.resourceVersion",
        "involvedObject.resourceVersion",
    ),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
    ("reportingController", "reportingComponent"),
    ("source", "source"),
    ("type", "type"),
    ("metadata.namespace", "metadata.namespace"),
    ("metadata.name", "metadata.name"),
];

/// The field label conversion function upstream 1.33 registers for the
/// resource (or the default one), returning the internal label that
/// [`selectable_field`] knows, or upstream's error.
fn convert_field_label<'a>(group: &str, resource: &str, label: &'a str) -> Result<&'a str, String> {
    let allow = |allowed: &[&str]| {
        if allowed.contains(&label) {
            Ok(label)
        } else {
            Err(format!("field label not supported: {label}"))
        }
    };
    match (group, resource) {
        ("", "pods") => match label {
            // Old v1 clients send spec.host.
            "spec.host" => Ok("spec.nodeName"),
            _ => allow(POD_FIELDS),
        },
        ("", "nodes") => allow(NODE_FIELDS),
        ("", "replicationcontrollers") => allow(REPLICATION_CONTROLLER_FIELDS),
        ("", "events") => allow(EVENT_FIELDS),
        ("", "namespaces") => allow(NAMESPACE_FIELDS),
        ("", "secrets") => allow(SECRET_FIELDS),
        ("", "services") => allow(SERVICE_FIELDS),
        ("batch", "jobs") => {
            if JOB_FIELDS.contains(&label) {
                Ok(label)
            } else {
                Err(format!(
                    "field label {} not supported for batchv1.Job",
                    go_quote(label)
                ))
            }
        }
        ("certificates.k8s.io", "certificatesigningrequests" | "clustertrustbundles") => {
            allow(SIGNER_FIELDS)
        }
        ("events.k8s.io", "events") => EVENTS_V1_FIELDS
            .iter()
            .find(|(external, _)| *external == label)
            .map(|(_, internal)| *internal)
            .ok_or_else(|| format!("field label not supported: {label}")),
        ("resource.k8s.io", "resourceslices") => {
            if RESOURCE_SLICE_FIELDS.contains(&label) {
                Ok(label)
            } else {
                Err(format!(
                    "field label not supported for resource.k8s.io/v1beta1, Kind=ResourceSlice: {label}"
                ))
            }
        }
        // runtime.DefaultMetaV1FieldSelectorConversion.
        _ => match label {
            "metadata.name" | "metadata.namespace" => Ok(label),
            _ => Err(format!(
                "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                go_quote(label)
            )),
        },
    }
}

/// The value of an internal field label for an object, as the resource's
/// upstream `ToSelectableFields` computes it; None where upstream's field
/// set has no such entry (it then compares as "").
fn selectable_field(group: &str, resource: &str, obj: &Value, label: &str) -> Option<String> {
    match label {
        "metadata.name" => return Some(str_at(obj, &["metadata", "name"])),
        "metadata.namespace" => return Some(str_at(obj, &["metadata", "namespace"])),
        _ => {}
    }
    let value = match (group, resource) {
        ("", "pods") => match label {
            "spec.nodeName" => str_at(obj, &["spec", "nodeName"]),
            "spec.restartPolicy" => str_at(obj, &["spec", "restartPolicy"]),
            "spec.schedulerName" => str_at(obj, &["spec", "schedulerName"]),
            "spec.serviceAccountName" => {
                // v1 serviceAccount is the deprecated alias the internal type folds in.
                let name = str_at(obj, &["spec", "serviceAccountName"]);
                if name.is_empty() {
                    str_at(obj, &["spec", "serviceAccount"])
                } else {
                    name
                }
            }
            "spec.hostNetwork" => bool_at(obj, &["spec", "hostNetwork"]),
            "status.phase" => str_at(obj, &["status", "phase"]),
            "status.podIP" => {
                // The internal pod keeps podIPs only; v1 podIP wins when set.
                let ip = str_at(obj, &["status", "podIP"]);
                if ip.is_empty() {
                    obj.pointer("/status/podIPs/0/ip")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                } else {
                    ip
                }
            }
            "status.nominatedNodeName" => str_at(obj, &["status", "nominatedNodeName"]),
            _ => return None,
        },
        ("", "nodes") => match label {
            "spec.unschedulable" => bool_at(obj, &["spec", "unschedulable"]),
            _ => return None,
        },
        ("", "replicationcontrollers") => match label {
            "status.replicas" => int_at(obj, &["status", "replicas"]),
            _ => return None,
        },
        ("", "events") | ("events.k8s.io", "events") => return event_field(obj, label),
        ("", "namespaces") => match label {
            "status.phase" => str_at(obj, &["status", "phase"]),
            _ => return None,
        },
        ("", "secrets") => match label {
            "type" => str_at(obj, &["type"]),
            _ => return None,
        },
        ("", "services") => match label {
            "spec.clusterIP" => str_at(obj, &["spec", "clusterIP"]),
            "spec.type" => str_at(obj, &["spec", "type"]),
            _ => return None,
        },
        ("batch", "jobs") => match label {
            "status.successful" => int_at(obj, &["status", "succeeded"]),
            _ => return None,
        },
        ("certificates.k8s.io", "certificatesigningrequests" | "clustertrustbundles") => {
            match label {
                "spec.signerName" => str_at(obj, &["spec", "signerName"]),
                _ => return None,
            }
        }
        ("resource.k8s.io", "resourceslices") => match label {
            "spec.nodeName" => str_at(obj, &["spec", "nodeName"]),
            "spec.driver" => str_at(obj, &["spec", "driver"]),
            _ => return None,
        },
        _ => return None,
    };
    Some(value)
}

/// The core Event field set, from either the core/v1 shape
/// (`involvedObject`, `source.component`, `reportingComponent`) or the
/// events.k8s.io/v1 shape (`regarding`, `deprecatedSource.component`,
/// `reportingController`).
fn event_field(obj: &Value, label: &str) -> Option<String> {
    let either = |core: &[&str], v1: &[&str]| {
        let s = str_at(obj, core);
        if s.is_empty() {
            str_at(obj, v1)
        } else {
            s
        }
    };
    let reporting = || either(&["reportingComponent"], &["reportingController"]);
    if let Some(sub) = label.strip_prefix("involvedObject.") {
        return match sub {
            "kind" | "namespace" | "name" | "uid" | "apiVersion" | "resourceVersion"
            | "fieldPath" => Some(either(&["involvedObject", sub], &["regarding", sub])),
            _ => None,
        };
    }
    Some(match label {
        "reason" => str_at(obj, &["reason"]),
        "type" => str_at(obj, &["type"]),
        "reportingComponent" => reporting(),
        "source" => {
            let source = either(&["source", "component"], &["deprecatedSource", "component"]);
            if source.is_empty() {
                reporting()
            } else {
                source
            }
        }
        _ => return None,
    })
}

fn value_at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, key| v.get(*key))
}

fn str_at(obj: &Value, path: &[&str]) -> String {
    value_at(obj, path)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A boolean field printed as Go prints it; false when absent.
fn bool_at(obj: &Value, path: &[&str]) -> String {
    let b = value_at(obj, path)
        .and_then(Value::as_bool)
        .unwrap_or(false);
    b.to_string()
}

/// An integer field printed in decimal; 0 when absent.
fn int_at(obj: &Value, path: &[&str]) -> String {
    value_at(obj, path)
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .to_string()
}

fn path_get<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted
        .trim_start_matches('.')
        .split('.')
        .try_fold(obj, |v, key| v.get(key))
}

fn scalar_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()
    }

    fn parse_ok(s: &str) -> LabelSelector {
        match LabelSelector::parse(s) {
            Ok(sel) => sel,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn parse_err(s: &str) -> String {
        match LabelSelector::parse(s) {
            Ok(sel) => panic!("{s:?} should not parse, got {sel}"),
            Err(e) => e,
        }
    }

    fn req(key: &str, op: Operator, values: &[&str]) -> Requirement {
        let values = values.iter().map(|v| v.to_string()).collect();
        match Requirement::new(key, op, values) {
            Ok(r) => r,
            Err(e) => panic!("requirement {key}: {e}"),
        }
    }

    #[test]
    fn upstream_good_strings_parse_and_restring_without_spaces() {
        for s in [
            "x=a,y=b,z=c",
            "",
            "x!=a,y=b",
            "x=",
            "x= ",
            "x=,z= ",
            "x= ,z= ",
            "!x",
            "x>1",
            "x>1,z<5",
        ] {
            assert_eq!(parse_ok(s).to_string(), s.replace(' ', ""), "{s:?}");
        }
    }

    #[test]
    fn upstream_bad_strings_fail() {
        for s in [
            "x=a||y=b",
            "x==a==b",
            "!x=a",
            "x<a",
            "x,,y",
            ",x,y",
            "x nott in (y)",
            "a in (xyz),",
            "a in (xyz)b notin ()",
            "a in (xyz abc)",
            "a notin(",
            "a (",
            "(",
        ] {
            parse_err(s);
        }
    }

    #[test]
    fn parse_is_deterministic() {
        assert_eq!(
            parse_ok("x=a,a=x").to_string(),
            parse_ok("a=x,x=a").to_string()
        );
        assert_eq!(parse_ok("x=a,a=x").to_string(), "a=x,x=a");
    }

    #[test]
    fn set_based_parse_results_from_upstream() {
        let cases: &[(&str, Vec<Requirement>)] = &[
            ("\rx", vec![req("x", Operator::Exists, &[])]),
            (
                "this-is-a-dns.domain.com/key-with-dash",
                vec![req(
                    "this-is-a-dns.domain.com/key-with-dash",
                    Operator::Exists,
                    &[],
                )],
            ),
            (
                "this-is-another-dns.domain.com/key-with-dash in (so,what)",
                vec![req(
                    "this-is-another-dns.domain.com/key-with-dash",
                    Operator::In,
                    &["so", "what"],
                )],
            ),
            (
                "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
                vec![req(
                    "0.1.2.domain/99",
                    Operator::NotIn,
                    &["10.10.100.1", "tick.tack.clock"],
                )],
            ),
            ("foo  in\t (abc)", vec![req("foo", Operator::In, &["abc"])]),
            ("x notin\n (abc)", vec![req("x", Operator::NotIn, &["abc"])]),
            (
                "x  notin\t\t\t(abc,def)",
                vec![req("x", Operator::NotIn, &["abc", "def"])],
            ),
            ("x in (abc,)", vec![req("x", Operator::In, &["", "abc"])]),
            ("x in ()", vec![req("x", Operator::In, &[""])]),
            (
                "x notin (abc,,def),bar,z in (),w",
                vec![
                    req("bar", Operator::Exists, &[]),
                    req("w", Operator::Exists, &[]),
                    req("x", Operator::NotIn, &["", "abc", "def"]),
                    req("z", Operator::In, &[""]),
                ],
            ),
            (
                "x,y in (a)",
                vec![
                    req("x", Operator::Exists, &[]),
                    req("y", Operator::In, &["a"]),
                ],
            ),
            ("x>1", vec![req("x", Operator::GreaterThan, &["1"])]),
            ("x<7", vec![req("x", Operator::LessThan, &["7"])]),
            (
                "x=a,y!=b,z in (h,i,j)",
                vec![
                    req("x", Operator::Equals, &["a"]),
                    req("y", Operator::NotEquals, &["b"]),
                    req("z", Operator::In, &["h", "i", "j"]),
                ],
            ),
            ("x notin ( )", vec![req("x", Operator::NotIn, &[""])]),
            ("x notin (, a)", vec![req("x", Operator::NotIn, &["", "a"])]),
            ("a ", vec![req("a", Operator::Exists, &[])]),
            (
                "a in (x,y,notin, z,in)",
                vec![req("a", Operator::In, &["in", "notin", "x", "y", "z"])],
            ),
            ("x==a", vec![req("x", Operator::DoubleEquals, &["a"])]),
            ("notin=in", vec![req("notin", Operator::Equals, &["in"])]),
        ];
        for (s, want) in cases {
            assert_eq!(parse_ok(s).requirements(), want.as_slice(), "{s:?}");
        }
    }

    #[test]
    fn matching_from_upstream() {
        let yes = |s: &str, l: &[(&str, &str)]| {
            assert!(parse_ok(s).matches(Some(&set(l))), "{s} vs {l:?}")
        };
        let no = |s: &str, l: &[(&str, &str)]| {
            assert!(!parse_ok(s).matches(Some(&set(l))), "{s} vs {l:?}")
        };
        yes("", &[("x", "y")]);
        yes("x=y", &[("x", "y")]);
        yes("x=y,z=w", &[("x", "y"), ("z", "w")]);
        yes("x!=y,z!=w", &[("x", "z"), ("z", "a")]);
        yes("notin=in", &[("notin", "in")]);
        yes("x", &[("x", "z")]);
        yes("!x", &[("y", "z")]);
        yes("x>1", &[("x", "2")]);
        yes("x<1", &[("x", "0")]);
        no("x=z", &[]);
        no("x=y", &[("x", "z")]);
        no("x=y,z=w", &[("x", "w"), ("z", "w")]);
        no("x!=y,z!=w", &[("x", "z"), ("z", "w")]);
        no("x", &[("y", "z")]);
        no("!x", &[("x", "z")]);
        no("x>1", &[("x", "0")]);
        no("x<1", &[("x", "2")]);
        let labels = [("foo", "bar"), ("baz", "blah")];
        yes("foo=bar", &labels);
        yes("baz=blah", &labels);
        yes("foo=bar,baz=blah", &labels);
        no("foo=blah", &labels);
        no("baz=bar", &labels);
        no("foo=bar,foobar=bar,baz=blah", &labels);
        // Set-based requirements.
        yes("x in (foo),y notin (alpha)", &[("x", "foo"), ("y", "baz")]);
        no("x in (foo),y in (alpha)", &[("x", "foo"), ("y", "baz")]);
        yes("x notin (),y", &[("y", "")]);
        yes("!x,y", &[("y", "")]);
        no("x notin (),!y", &[("y", "")]);
        no("x in ()", &[("y", "baz")]);
        yes("z>1", &[("z", "2")]);
        no("z>1", &[("z", "v2")]);
        yes("z<10", &[("z", "-2")]);
        no("z<10", &[("z", "+20")]);
        yes("z>1", &[("z", "+2")]);
    }

    #[test]
    fn absent_labels_and_absent_keys() {
        let sel = parse_ok("a!=b,c notin (d)");
        assert!(sel.matches(None));
        assert!(sel.matches(Some(&Map::new())));
        assert!(!parse_ok("a").matches(None));
        assert!(parse_ok("!a").matches(None));
        assert!(!parse_ok("a>1").matches(None));
        assert!(parse_ok("").matches(None));
        assert!(parse_ok("").is_empty());
        assert!(!parse_ok("a").is_empty());
    }

    #[test]
    fn parse_error_texts_are_upstreams() {
        assert_eq!(
            parse_err("x=a||y=b"),
            "unable to parse requirement: values[0][x]: Invalid value: \"a||y\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
        assert_eq!(
            parse_err("x==a==b"),
            "found '==', expected: ',' or 'end of string'"
        );
        assert_eq!(
            parse_err("!x=a"),
            "found '=', expected: ',' or 'end of string'"
        );
        assert_eq!(
            parse_err("x<a"),
            "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        assert_eq!(
            parse_err("x,,y"),
            "found ',', expected: identifier after ','"
        );
        assert_eq!(
            parse_err(",x"),
            "found ',', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            parse_err("x nott in (y)"),
            "unable to parse requirement: found 'nott', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(
            parse_err("a in (xyz),"),
            "found '', expected: identifier after ','"
        );
        assert_eq!(
            parse_err("a in (xyz)b notin ()"),
            "found 'b', expected: ',' or 'end of string'"
        );
        assert_eq!(
            parse_err("a in (xyz abc)"),
            "unable to parse requirement: found 'abc', expected: ',' or ')'"
        );
        assert_eq!(
            parse_err("a notin("),
            "unable to parse requirement: found '', expected: ',', ')' or identifier"
        );
        assert_eq!(
            parse_err("a in x"),
            "unable to parse requirement: found 'x' expected: '('"
        );
        assert_eq!(
            parse_err("a ("),
            "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(
            parse_err("("),
            "found '(', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            parse_err("!"),
            "unable to parse requirement: found '', expected: identifier"
        );
        assert_eq!(
            parse_err("a in (x,=)"),
            "unable to parse requirement: found '=', expected: ',', or identifier"
        );
        assert_eq!(
            parse_err("a/b/c=d"),
            "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        );
        assert_eq!(
            parse_err("a>-x"),
            "unable to parse requirement: [values[0]: Invalid value: \"-x\": for 'Gt', 'Lt' operators, the value must be an integer, values[0][a]: Invalid value: \"-x\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')]"
        );
        assert!(parse_err(&format!("{}=1", "k".repeat(64)))
            .starts_with("unable to parse requirement: <nil>: Invalid value: \"kkk"));
    }

    #[test]
    fn lexer_takes_longest_operators_and_whitespace() {
        assert_eq!(
            parse_ok("a!=b").requirements()[0].operator(),
            Operator::NotEquals
        );
        assert_eq!(
            parse_ok("a==b").requirements()[0].operator(),
            Operator::DoubleEquals
        );
        assert_eq!(parse_ok(" a \t= \n b ").to_string(), "a=b");
        // Non-special characters form identifiers (here: invalid keys).
        assert!(parse_err("~").contains("<nil>: Invalid value: \"~\""));
        assert!(parse_err("||").contains("<nil>: Invalid value: \"||\""));
        // Negative numbers are not label values, as upstream.
        assert!(parse_err("z<-1").contains("a valid label"));
    }

    #[test]
    fn display_is_upstreams_canonical_form() {
        let mut sel = LabelSelector::everything();
        sel.add(req("z", Operator::Exists, &[]));
        sel.add(req("x", Operator::In, &["def", "abc"]));
        sel.add(req("y", Operator::NotIn, &["jkl"]));
        assert_eq!(sel.to_string(), "x in (abc,def),y notin (jkl),z");
        let mut sel = LabelSelector::everything();
        sel.add(req("x", Operator::NotIn, &["abc", "def"]));
        sel.add(req("y", Operator::NotEquals, &["jkl"]));
        sel.add(req("z", Operator::DoesNotExist, &[]));
        assert_eq!(sel.to_string(), "x notin (abc,def),y!=jkl,!z");
        assert_eq!(
            parse_ok("x notin (abc),y in (jkl,mno),z notin ()").to_string(),
            "x notin (abc),y in (jkl,mno),z notin ()"
        );
        assert_eq!(
            parse_ok("x=abc,y==jkl,z!=a").to_string(),
            "x=abc,y==jkl,z!=a"
        );
        assert_eq!(parse_ok("x>2,y<8,z").to_string(), "x>2,y<8,z");
    }

    #[test]
    fn requirement_constructor_errors() {
        let err = |key: &str, op, vals: &[&str]| {
            Requirement::new(key, op, vals.iter().map(|v| v.to_string()).collect())
                .err()
                .unwrap_or_default()
        };
        assert_eq!(
            err("x1", Operator::In, &[]),
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            err("x5", Operator::Equals, &["bar", "foo"]),
            "values: Invalid value: []string{\"bar\", \"foo\"}: exact-match compatibility requires one single value"
        );
        assert_eq!(
            err("x8", Operator::Exists, &["foo"]),
            "values: Invalid value: []string{\"foo\"}: values set must be empty for exists and does not exist"
        );
        assert_eq!(
            err("x13", Operator::GreaterThan, &[]),
            "values: Invalid value: []string(nil): for 'Gt', 'Lt' operators, exactly one value is required"
        );
        assert!(
            err(&"a".repeat(254), Operator::Exists, &[]).starts_with("key: Invalid value: \"aaa")
        );
        assert!(err("x17", Operator::Equals, &["a b"])
            .starts_with("values[0][x17]: Invalid value: \"a b\": a valid label"));
        assert!(Requirement::new("x11", Operator::GreaterThan, vec!["1".into()]).is_ok());
    }

    #[test]
    fn exact_match_and_from_labels() {
        let sel = parse_ok("a=b,c in (d),e in (f,g),h!=i");
        assert_eq!(sel.requires_exact_match("a"), Some("b"));
        assert_eq!(sel.requires_exact_match("c"), Some("d"));
        assert_eq!(sel.requires_exact_match("e"), None);
        assert_eq!(sel.requires_exact_match("h"), None);
        let from = LabelSelector::from_labels(&set(&[("foo", "bar"), ("baz", "blah")]));
        assert_eq!(from.to_string(), "baz=blah,foo=bar");
        assert!(from.matches(Some(&set(&[("foo", "bar"), ("baz", "blah"), ("x", "y")]))));
        assert!(!from.matches(Some(&set(&[("foo", "bar")]))));
        assert!(LabelSelector::from_labels(&Map::new()).is_empty());
    }

    #[test]
    fn json_label_selectors() {
        let sel = label_selector_from_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["b", "a"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "gpu", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"}
            ]
        }));
        let sel = match sel {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            sel.to_string(),
            "app=web,env notin (dev),gpu,!legacy,tier in (a,b)"
        );
        assert!(sel.matches(Some(&set(&[("app", "web"), ("tier", "a"), ("gpu", "1")]))));
        assert!(!sel.matches(Some(&set(&[("app", "web"), ("tier", "c"), ("gpu", "1")]))));
        assert!(!sel.matches(Some(&set(&[("app", "web"), ("tier", "a")]))));

        let empty = label_selector_from_json(&json!({})).unwrap_or_else(|e| panic!("{e}"));
        assert!(empty.is_empty() && empty.matches(None));
        let nothing = label_selector_from_json(&Value::Null).unwrap_or_else(|e| panic!("{e}"));
        assert!(!nothing.is_empty() && nothing.is_nothing());
        assert!(!nothing.matches(Some(&set(&[("a", "b")]))));
        assert_eq!(nothing.to_string(), "");

        assert_eq!(
            label_selector_from_json(
                &json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})
            )
            .err(),
            Some("\"Gt\" is not a valid label selector operator".to_string())
        );
        assert_eq!(
            label_selector_from_json(&json!({"matchExpressions": [{"key": "a", "operator": "In"}]})).err(),
            Some("values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty".to_string())
        );
        assert!(
            label_selector_from_json(&json!({"matchLabels": {"a": "-bad"}}))
                .err()
                .unwrap_or_default()
                .starts_with("values[0][a]: Invalid value: \"-bad\"")
        );
        assert!(
            label_selector_from_json(&json!({"matchLabels": {"a/b/c": "x"}}))
                .err()
                .unwrap_or_default()
                .starts_with("key: Invalid value: \"a/b/c\"")
        );
        assert!(label_selector_from_json(&json!({"matchLabels": ["x"]})).is_err());
        assert!(label_selector_from_json(&json!("app=web")).is_err());
    }

    #[test]
    fn go_quote_escapes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(go_quote("\n\t\u{1}\u{7f}"), "\"\\n\\t\\x01\\x7f\"");
        assert_eq!(go_quote("rā\u{200b}\u{a0}"), "\"rā\\u200b\\u00a0\"");
    }

    // --- field selectors ---

    fn fparse_ok(s: &str) -> FieldSelector {
        match FieldSelector::parse(s) {
            Ok(sel) => sel,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn fparse_err(s: &str) -> String {
        match FieldSelector::parse(s) {
            Ok(sel) => panic!("{s:?} should not parse, got {sel}"),
            Err(e) => e,
        }
    }

    #[test]
    fn field_split_terms_from_upstream() {
        let cases: &[(&str, &[&str])] = &[
            ("a", &["a"]),
            ("a=avalue", &["a=avalue"]),
            ("a=avalue,b=bvalue", &["a=avalue", "b=bvalue"]),
            (
                "a=avalue,b==bvalue,c!=cvalue",
                &["a=avalue", "b==bvalue", "c!=cvalue"],
            ),
            ("", &[]),
            ("a=a,", &["a=a", ""]),
            (",a=a", &["", "a=a"]),
            (r"k=\,,k2=v2", &[r"k=\,", "k2=v2"]),
            (r"k=\\,k2=v2", &[r"k=\\", "k2=v2"]),
            (r"k=\\\,,k2=v2", &[r"k=\\\,", "k2=v2"]),
            (r"k=\a\b\", &[r"k=\a\b\"]),
            (r"k=\", &[r"k=\"]),
            ("함=수,목=록", &["함=수", "목=록"]),
        ];
        for (s, want) in cases {
            assert_eq!(split_field_terms(s), *want, "{s:?}");
        }
    }

    #[test]
    fn field_split_term_from_upstream() {
        assert_eq!(
            split_field_term("a=value"),
            Some(("a", FieldOperator::Equals, "value"))
        );
        assert_eq!(
            split_field_term("b==value"),
            Some(("b", FieldOperator::Equals, "value"))
        );
        assert_eq!(
            split_field_term("c!=value"),
            Some(("c", FieldOperator::NotEquals, "value"))
        );
        assert_eq!(split_field_term(""), None);
        assert_eq!(split_field_term("a"), None);
        assert_eq!(
            split_field_term(r"k=\,"),
            Some(("k", FieldOperator::Equals, r"\,"))
        );
        assert_eq!(
            split_field_term(r"k=\\\a\b\=\,\"),
            Some(("k", FieldOperator::Equals, r"\\\a\b\=\,\"))
        );
        assert_eq!(
            split_field_term("함=수"),
            Some(("함", FieldOperator::Equals, "수"))
        );
    }

    #[test]
    fn field_value_escaping_round_trips() {
        for (raw, escaped) in [
            ("", ""),
            ("a", "a"),
            ("=", r"\="),
            (",", r"\,"),
            ("\\", r"\\"),
            (r"\=\,\", r"\\\=\\\,\\"),
        ] {
            assert_eq!(escape_field_value(raw), escaped);
            assert_eq!(unescape_field_value(escaped).as_deref(), Ok(raw));
        }
        assert_eq!(
            unescape_field_value(r"\"),
            Err(r"invalid field selector: invalid escape sequence: \".to_string())
        );
        assert_eq!(
            unescape_field_value(r"\\\"),
            Err(r"invalid field selector: invalid escape sequence: \".to_string())
        );
        assert_eq!(
            unescape_field_value(r"\a"),
            Err(r"invalid field selector: invalid escape sequence: \a".to_string())
        );
        assert_eq!(
            unescape_field_value(r"\!"),
            Err(r"invalid field selector: invalid escape sequence: \!".to_string())
        );
        assert_eq!(
            unescape_field_value("a=b"),
            Err("invalid field selector: unescaped character in value: 61".to_string())
        );
        assert_eq!(unescape_field_value("a!b").as_deref(), Ok("a!b"));
    }

    #[test]
    fn field_selector_parse_from_upstream() {
        for s in ["x=a,y=b,z=c", "", "x!=a,y=b", r"x=a||y\=b", r"x=a\=\=b"] {
            assert_eq!(fparse_ok(s).to_string(), s, "{s:?}");
        }
        for s in [
            "x=a||y=b",
            "x==a==b",
            "x=a,b",
            "x in (a)",
            "x in (a,b,c)",
            "x",
        ] {
            fparse_err(s);
        }
        assert_eq!(
            fparse_ok("x=a,a=x").to_string(),
            fparse_ok("a=x,x=a").to_string()
        );
        assert_eq!(fparse_ok("b==c").to_string(), "b=c");
        assert_eq!(
            fparse_err("x=a,b"),
            "invalid selector: 'x=a,b'; can't understand 'b'"
        );
        assert_eq!(
            fparse_err("x==a==b"),
            "invalid field selector: unescaped character in value: 61"
        );
        assert!(fparse_ok(",,").is_empty());
        assert_eq!(fparse_ok(r"a=b\,c").terms()[0].value, "b,c");
    }

    #[test]
    fn field_matching_with_escapes() {
        let obj = json!({"metadata": {"name": "=value\\,\\", "namespace": "ns"}});
        assert!(fparse_ok(r"metadata.name=\=value\\\,\\").matches("", "configmaps", &obj));
        assert!(fparse_ok("metadata.namespace=ns,metadata.name!=x").matches(
            "",
            "configmaps",
            &obj
        ));
        assert!(!fparse_ok("metadata.namespace!=ns").matches("", "configmaps", &obj));
        assert!(fparse_ok("").matches("", "configmaps", &obj));
    }

    #[test]
    fn unsupported_field_labels_use_upstream_texts() {
        let check = |s: &str, g: &str, r: &str| fparse_ok(s).check_supported(g, r);
        assert_eq!(
            check("spec.foo=x", "", "pods"),
            Err("field label not supported: spec.foo".to_string())
        );
        assert_eq!(
            check("foo.bar=baz", "networking.k8s.io", "ingresses"),
            Err("\"foo.bar\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"".to_string())
        );
        assert_eq!(
            check("status.succeeded=1", "batch", "jobs"),
            Err("field label \"status.succeeded\" not supported for batchv1.Job".to_string())
        );
        // Upstream registers no conversion for apps/v1 ReplicaSets, so
        // status.replicas is rejected there (kubernetes/kubernetes#135136).
        assert_eq!(
            check("status.replicas=0", "apps", "replicasets"),
            Err("\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"".to_string())
        );
        // Nodes and namespaces are cluster-scoped and reject metadata.namespace.
        assert_eq!(
            check("metadata.namespace=x", "", "nodes"),
            Err("field label not supported: metadata.namespace".to_string())
        );
        assert!(check("metadata.namespace=x", "", "namespaces").is_err());
        assert!(check("regarding.name=x", "events.k8s.io", "events").is_ok());
        assert!(check("involvedObject.name=x", "events.k8s.io", "events").is_err());
        assert!(check(
            "involvedObject.name=x,type=Warning,source=kubelet,reportingComponent=k",
            "",
            "events"
        )
        .is_ok());
        assert!(check(
            "spec.host=n1,status.podIPs=1.2.3.4,spec.hostNetwork=true",
            "",
            "pods"
        )
        .is_ok());
        assert!(check("status.replicas=1", "", "replicationcontrollers").is_ok());
        assert!(check("spec.clusterIP=None,spec.type=NodePort", "", "services").is_ok());
        assert!(check("type=Opaque", "", "secrets").is_ok());
        assert!(check("status.phase=Active,metadata.name=x", "", "namespaces").is_ok());
        assert!(check(
            "spec.signerName=x",
            "certificates.k8s.io",
            "certificatesigningrequests"
        )
        .is_ok());
        assert!(check("spec.unschedulable=true", "", "nodes").is_ok());
        assert!(check(
            "metadata.name=a,metadata.namespace=b",
            "apps",
            "deployments"
        )
        .is_ok());
        assert!(check("", "", "pods").is_ok());
    }

    #[test]
    fn pod_fields() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler", "serviceAccount": "sa"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}]}
        });
        let m = |s: &str| fparse_ok(s).matches("", "pods", &pod);
        assert!(m("spec.nodeName=n1"));
        assert!(m("spec.host=n1"));
        assert!(!m("spec.nodeName!=n1"));
        assert!(m("spec.restartPolicy=Always,status.phase=Running"));
        assert!(m("spec.schedulerName=default-scheduler"));
        assert!(m("spec.serviceAccountName=sa"));
        assert!(m("spec.hostNetwork=false"));
        assert!(!m("spec.hostNetwork=true"));
        assert!(m("status.podIP=10.0.0.5"));
        // status.podIPs is accepted but not in upstream's field set: always "".
        assert!(!m("status.podIPs=10.0.0.5"));
        assert!(m("status.podIPs="));
        assert!(m("status.nominatedNodeName="));
        assert!(m("metadata.name=p,metadata.namespace=default"));
        let host = json!({"spec": {"hostNetwork": true}, "status": {"podIP": "1.2.3.4"}});
        assert!(fparse_ok("spec.hostNetwork=true,status.podIP=1.2.3.4").matches("", "pods", &host));
        assert!(fparse_ok("spec.nodeName=").matches("", "pods", &host));
    }

    #[test]
    fn other_kinds_fields() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        assert!(fparse_ok("spec.unschedulable=true,metadata.name=n1").matches("", "nodes", &node));
        assert!(fparse_ok("spec.unschedulable=false").matches("", "nodes", &json!({})));

        let rc = json!({"status": {"replicas": 3}});
        assert!(fparse_ok("status.replicas=3").matches("", "replicationcontrollers", &rc));
        assert!(fparse_ok("status.replicas=0").matches("", "replicationcontrollers", &json!({})));

        let job = json!({"status": {"succeeded": 1}});
        assert!(fparse_ok("status.successful=1").matches("batch", "jobs", &job));
        assert!(fparse_ok("status.successful!=1").matches("batch", "jobs", &json!({})));

        let ns = json!({"metadata": {"name": "kube-system"}, "status": {"phase": "Active"}});
        assert!(fparse_ok("status.phase=Active").matches("", "namespaces", &ns));

        let secret = json!({"type": "kubernetes.io/tls"});
        assert!(fparse_ok(r"type=kubernetes.io/tls").matches("", "secrets", &secret));

        let svc = json!({"spec": {"clusterIP": "None", "type": "ClusterIP"}});
        assert!(fparse_ok("spec.clusterIP=None,spec.type=ClusterIP").matches("", "services", &svc));

        let csr = json!({"spec": {"signerName": "kubernetes.io/kubelet-serving"}});
        assert!(
            fparse_ok("spec.signerName=kubernetes.io/kubelet-serving").matches(
                "certificates.k8s.io",
                "certificatesigningrequests",
                &csr
            )
        );
    }

    #[test]
    fn event_fields_in_both_shapes() {
        let core = json!({
            "metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default", "uid": "u1", "fieldPath": "spec.containers{c}"},
            "reason": "Started", "type": "Normal",
            "source": {"component": "kubelet"},
            "reportingComponent": "kubelet"
        });
        let m = |s: &str, g: &str, o: &Value| fparse_ok(s).matches(g, "events", o);
        assert!(m(
            "involvedObject.kind=Pod,involvedObject.name=p,involvedObject.uid=u1",
            "",
            &core
        ));
        assert!(m(r"involvedObject.fieldPath=spec.containers{c}", "", &core));
        assert!(m(
            "reason=Started,type=Normal,source=kubelet,reportingComponent=kubelet",
            "",
            &core
        ));
        assert!(m("type!=Warning", "", &core));
        assert!(m(
            "regarding.name=p,reportingController=kubelet",
            "events.k8s.io",
            &core
        ));

        let v1 = json!({
            "metadata": {"name": "e", "namespace": "default"},
            "regarding": {"kind": "Node", "name": "n1"},
            "reason": "Ready", "type": "Normal",
            "reportingController": "kedge"
        });
        assert!(m(
            "regarding.kind=Node,regarding.name=n1",
            "events.k8s.io",
            &v1
        ));
        // source falls back to the reporting controller.
        assert!(m(
            "source=kedge,reportingController=kedge",
            "events.k8s.io",
            &v1
        ));
        assert!(m("involvedObject.name=n1,source=kedge", "", &v1));
    }

    #[test]
    fn custom_resources() {
        let sel = fparse_ok("spec.color=red,spec.size=3,spec.on=true");
        assert!(sel
            .check_supported_custom(true, &[".spec.color", ".spec.size", ".spec.on"])
            .is_ok());
        assert_eq!(
            sel.check_supported_custom(true, &[".spec.color"]),
            Err("field label not supported: spec.on".to_string())
        );
        assert_eq!(
            fparse_ok("metadata.namespace=a").check_supported_custom(false, &[]),
            Err("field label not supported: metadata.namespace".to_string())
        );
        assert!(fparse_ok("metadata.namespace=a,metadata.name=b")
            .check_supported_custom(true, &[])
            .is_ok());
        let obj = json!({"spec": {"color": "red", "size": 3, "on": true}});
        assert!(sel.matches_custom(&obj));
        assert!(!sel.matches_custom(&json!({"spec": {"color": "red"}})));
        assert!(fparse_ok("spec.missing=").matches_custom(&obj));
    }

    #[test]
    fn unsupported_fields_compare_as_empty() {
        let rs = json!({"status": {"replicas": 2}});
        assert!(!fparse_ok("status.replicas=2").matches("apps", "replicasets", &rs));
        assert!(fparse_ok("status.replicas=").matches("apps", "replicasets", &rs));
    }

    #[test]
    fn non_string_label_values_compare_by_json_text() {
        let labels = json!({"n": 5, "z": null});
        let labels = labels.as_object();
        assert!(parse_ok("n=5").matches(labels));
        assert!(parse_ok("n>4").matches(labels));
        assert!(parse_ok("z,z=").matches(labels));
    }

    #[test]
    fn field_exact_match() {
        let sel = fparse_ok("spec.nodeName=n1,metadata.name!=x");
        assert_eq!(sel.requires_exact_match("spec.nodeName"), Some("n1"));
        assert_eq!(sel.requires_exact_match("metadata.name"), None);
    }
}
