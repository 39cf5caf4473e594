//! A strict parser of the Prometheus text exposition format, version 0.0.4, written from the
//! spec (<https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format>) and
//! independently of the server's writer, so that a test that reads `/metrics` with it can catch
//! the writer's mistakes.
//!
//! What it enforces, in the spec's words where it has them:
//!
//! - "Lines are separated by a line feed character (`\n`). The last line must end with a line
//!   feed character. Empty lines are ignored." A CR is refused (it would end up in a token).
//! - "Within a line, tokens can be separated by any number of blanks and/or tabs ... Leading
//!   and trailing whitespace is ignored."
//! - `# HELP name docstring` and `# TYPE name type`: "Only one HELP line may exist for any
//!   given metric name", "Only one TYPE line may exist for a given metric name", the type one of
//!   `counter`, `gauge`, `histogram`, `summary`, `untyped`; in HELP, "backslash and line-feed
//!   characters have to be escaped as `\\` and `\n`" (any other escape is refused). Other
//!   `#` lines are comments.
//! - "All lines for a given metric must be provided as one single group, with the optional
//!   HELP and TYPE lines first": metadata after a family's samples, or a family's samples
//!   split by another's, are refused.
//! - Samples: `metric_name [ "{" label_name "=" '"' label_value '"' { "," ... } [ "," ] "}" ]
//!   value [ timestamp ]`; metric names `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names
//!   `[a-zA-Z_][a-zA-Z0-9_]*` and not starting with `__` ("reserved for internal use"), label
//!   values with `\\`, `\"` and `\n` as the only escapes, no label twice in a sample; the value
//!   a float "as required by Go's ParseFloat()" or `NaN`, `+Inf`, `-Inf` (Go's hexadecimal
//!   floats are not accepted: the server never writes them); the timestamp an int64.
//! - "Each line must have a unique combination of a metric name and labels."
//! - Histograms: a histogram `x` has `x_bucket` samples with an `le` label, "a bucket with
//!   {le="+Inf"}" whose value is "identical to the value of x_count", buckets "in increasing
//!   numerical order" of `le`, and `x_sum`; here also per label set, counts cumulative
//!   (never decreasing) and `x_sum`, `x_count` present for every bucket set and vice versa.
//!
//! Stricter than the spec, because the server should be: every family has both `# HELP` and
//! `# TYPE` (the spec lets a family without TYPE be untyped), a counter's name ends in
//! `_total` (the naming guide's rule, which the 0.0.4 format does not check), and counters,
//! buckets and counts are not negative.

use std::collections::HashSet;

/// A metric family's type, from its `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp: Option<i64>,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether the sample's labels, `le` aside, are exactly `labels` (in any order).
    fn has_labels(&self, labels: &[(&str, &str)]) -> bool {
        let own: Vec<_> = self.labels.iter().filter(|(n, _)| n != "le").collect();
        own.len() == labels.len() && labels.iter().all(|(n, v)| self.label(n) == Some(v))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: Option<Kind>,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

/// One histogram series: its buckets (`le`, cumulative count), `_sum` and `_count`.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl Family {
    /// Whether a sample named `sample` belongs to this family, given its type.
    fn owns(&self, sample: &str) -> bool {
        let suffix = sample.strip_prefix(self.name.as_str());
        match self.kind {
            Some(Kind::Histogram) => matches!(suffix, Some("_bucket" | "_sum" | "_count")),
            Some(Kind::Summary) => matches!(suffix, Some("" | "_sum" | "_count")),
            _ => suffix == Some(""),
        }
    }

    /// The histogram series whose labels (`le` aside) are exactly `labels`.
    pub fn histogram(&self, labels: &[(&str, &str)]) -> Option<Histogram> {
        let named = |suffix: &str| {
            let name = format!("{}{suffix}", self.name);
            self.samples.iter().filter(move |s| s.name == name && s.has_labels(labels))
        };
        let buckets: Vec<(f64, f64)> =
            named("_bucket").map(|s| (s.label("le").and_then(parse_float).unwrap_or(f64::NAN), s.value)).collect();
        let sum = named("_sum").next()?.value;
        let count = named("_count").next()?.value;
        (!buckets.is_empty()).then_some(Histogram { buckets, sum, count })
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition {
    pub families: Vec<Family>,
}

impl Exposition {
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// The value of the sample named `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.families
            .iter()
            .flat_map(|f| &f.samples)
            .find(|s| s.name == name && sorted(&s.labels) == sorted(&owned(labels)))
            .map(|s| s.value)
    }
}

/// Parses and checks an exposition; the error names the line and the rule it breaks.
pub fn parse(text: &str) -> Result<Exposition, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the last line must end with a line feed".into());
    }
    let mut exposition = Exposition::default();
    // The family whose group is open: its metadata or samples were the last lines read.
    let mut current: Option<usize> = None;
    let mut series = HashSet::new();
    // Not `str::lines`, which would take a CR before the LF as part of the line ending.
    for (number, line) in text.split('\n').enumerate() {
        let at = |why: String| format!("line {}: {why}: {line:?}", number + 1);
        if line.contains('\r') {
            return Err(at("a carriage return (lines end in a line feed alone)".into()));
        }
        let line = line.trim_matches(is_blank);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let Some((name, metadata)) = parse_metadata(comment).map_err(at)? else {
                continue; // a plain comment
            };
            let index = match exposition.families.iter().position(|f| f.name == name) {
                Some(index) if Some(index) != current => {
                    return Err(at(format!("metadata of {name} apart from the rest of its group")))
                }
                Some(index) if !exposition.families[index].samples.is_empty() => {
                    return Err(at(format!("metadata of {name} after its samples")))
                }
                Some(index) => index,
                None => {
                    exposition.families.push(Family {
                        name: name.clone(),
                        kind: None,
                        help: None,
                        samples: Vec::new(),
                    });
                    exposition.families.len() - 1
                }
            };
            current = Some(index);
            let family = &mut exposition.families[index];
            match metadata {
                Metadata::Help(help) if family.help.is_none() => family.help = Some(help),
                Metadata::Help(_) => return Err(at(format!("a second HELP line for {name}"))),
                Metadata::Type(kind) if family.kind.is_none() => family.kind = Some(kind),
                Metadata::Type(_) => return Err(at(format!("a second TYPE line for {name}"))),
            }
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let key = (sample.name.clone(), sorted(&sample.labels));
        if !series.insert(key) {
            return Err(at("a second line with the same metric name and labels".into()));
        }
        match current.map(|i| &mut exposition.families[i]) {
            Some(family) if family.owns(&sample.name) => {
                if family.kind.is_none() {
                    return Err(at(format!("a sample of {} before its TYPE line", family.name)));
                }
                family.samples.push(sample);
            }
            _ => {
                return Err(at(match exposition.families.iter().find(|f| f.owns(&sample.name)) {
                    Some(family) => format!("samples of {} are not one group", family.name),
                    None => format!("{} has no TYPE line", sample.name),
                }))
            }
        }
    }
    for family in &exposition.families {
        check_family(family)?;
    }
    Ok(exposition)
}

enum Metadata {
    Help(String),
    Type(Kind),
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The text after `#`: `HELP name doc` or `TYPE name type`; `None` for any other comment.
fn parse_metadata(comment: &str) -> Result<Option<(String, Metadata)>, String> {
    let comment = comment.trim_start_matches(is_blank);
    let (keyword, rest) = comment.split_once(is_blank).unwrap_or((comment, ""));
    if keyword != "HELP" && keyword != "TYPE" {
        return Ok(None);
    }
    let rest = rest.trim_start_matches(is_blank);
    let (name, rest) = rest.split_once(is_blank).unwrap_or((rest, ""));
    if !is_metric_name(name) {
        return Err(format!("{keyword} for an invalid metric name {name:?}"));
    }
    let metadata = if keyword == "HELP" {
        Metadata::Help(unescape(rest.trim_start_matches(is_blank), &['\\', 'n'])?)
    } else {
        let kind = match rest.trim_matches(is_blank) {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "histogram" => Kind::Histogram,
            "summary" => Kind::Summary,
            "untyped" => Kind::Untyped,
            other => return Err(format!("TYPE {other:?} is not a metric type (or not exactly one token)")),
        };
        Metadata::Type(kind)
    };
    Ok(Some((name.to_string(), metadata)))
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, and not `__...`, which is reserved.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// Undoes `\\` and the escapes in `allowed` (`n` is a line feed); any other is an error.
fn unescape(text: &str, allowed: &[char]) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(e) if allowed.contains(&e) => out.push(if e == 'n' { '\n' } else { e }),
            other => return Err(format!("invalid escape sequence \\{}", other.map(String::from).unwrap_or_default())),
        }
    }
    Ok(out)
}

/// A float as the format takes it: Go's `ParseFloat` syntax, or `NaN`, `+Inf`, `-Inf`.
pub fn parse_float(token: &str) -> Option<f64> {
    match token {
        "+Inf" => return Some(f64::INFINITY),
        "-Inf" => return Some(f64::NEG_INFINITY),
        "NaN" => return Some(f64::NAN),
        _ => {}
    }
    // Rust's float grammar is within Go's: an optional sign, digits with an optional point and
    // exponent, or the words inf, infinity and nan in any case. Go also takes hexadecimal
    // floats and digit separators, which this parser refuses.
    token.parse().ok()
}

/// `name{labels} value [timestamp]`, the line already trimmed.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(|c: char| c == '{' || is_blank(c)).unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = parse_labels(after_brace, &mut labels)?;
    }
    if !rest.starts_with(is_blank) {
        return Err("no blank between the metric and its value".into());
    }
    let mut tokens = rest.split(is_blank).filter(|t| !t.is_empty());
    let value = tokens.next().ok_or("no value")?;
    let value = parse_float(value).ok_or(format!("{value:?} is not a float"))?;
    let timestamp = match tokens.next() {
        None => None,
        Some(t) => Some(t.parse::<i64>().map_err(|_| format!("timestamp {t:?} is not an int64"))?),
    };
    if let Some(extra) = tokens.next() {
        return Err(format!("unexpected token {extra:?} after the value and timestamp"));
    }
    Ok(Sample { name: name.to_string(), labels, value, timestamp })
}

/// Reads `label="value",...}` (the `{` already taken) into `labels`; returns what follows `}`.
fn parse_labels<'a>(mut rest: &'a str, labels: &mut Vec<(String, String)>) -> Result<&'a str, String> {
    loop {
        rest = rest.trim_start_matches(is_blank);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let (name, after_name) = rest.split_once('=').ok_or("a label without =")?;
        let name = name.trim_matches(is_blank);
        if !is_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} twice in one sample"));
        }
        let quoted = after_name.trim_start_matches(is_blank).strip_prefix('"').ok_or("a label value without quotes")?;
        // The closing quote is the first one not escaped.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or("an unterminated label value")?;
        labels.push((name.to_string(), unescape(&quoted[..end], &['\\', '"', 'n'])?));
        rest = quoted[end + 1..].trim_start_matches(is_blank);
        if let Some(after_comma) = rest.strip_prefix(',') {
            rest = after_comma;
        } else if !rest.starts_with('}') {
            return Err("labels must be separated by commas".into());
        }
    }
}

fn owned(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

fn sorted(labels: &[(String, String)]) -> Vec<(String, String)> {
    let mut labels = labels.to_vec();
    labels.sort();
    labels
}

/// The rules that span a family's samples.
fn check_family(family: &Family) -> Result<(), String> {
    let name = &family.name;
    if family.help.is_none() {
        return Err(format!("{name} has no HELP line"));
    }
    match family.kind {
        Some(Kind::Counter) => {
            if !name.ends_with("_total") {
                return Err(format!("counter {name} is not named ..._total"));
            }
            if let Some(sample) = family.samples.iter().find(|s| s.value.is_nan() || s.value < 0.0) {
                return Err(format!("counter {name} has a negative or NaN value {}", sample.value));
            }
        }
        Some(Kind::Histogram) => check_histogram(family)?,
        _ => {}
    }
    Ok(())
}

/// For each label set: sorted, cumulative buckets ending in `+Inf`, equal to `_count`, and `_sum`.
fn check_histogram(family: &Family) -> Result<(), String> {
    let name = &family.name;
    let mut label_sets: Vec<Vec<(String, String)>> = Vec::new();
    for sample in &family.samples {
        let without_le: Vec<(String, String)> = sorted(&sample.labels).into_iter().filter(|(n, _)| n != "le").collect();
        let is_bucket = sample.name.ends_with("_bucket");
        if is_bucket != sample.label("le").is_some() {
            return Err(format!("{}: le belongs on buckets, and only there: {:?}", sample.name, sample.labels));
        }
        if sample.value.is_nan() || sample.value < 0.0 {
            return Err(format!("{}: a negative or NaN count {}", sample.name, sample.value));
        }
        if !label_sets.contains(&without_le) {
            label_sets.push(without_le);
        }
    }
    for labels in &label_sets {
        let labels: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let labels = &labels;
        let of = |suffix: &str| {
            let sample_name = format!("{name}{suffix}");
            family.samples.iter().filter(|s| s.name == sample_name && s.has_labels(labels)).collect::<Vec<_>>()
        };
        let buckets = of("_bucket");
        let [_sum] = of("_sum")[..] else { return Err(format!("{name}{labels:?}: no _sum")) };
        let [count] = of("_count")[..] else { return Err(format!("{name}{labels:?}: no _count")) };
        let mut previous: Option<(f64, f64)> = None;
        for bucket in &buckets {
            let le = bucket.label("le").unwrap_or_default();
            let bound = parse_float(le).filter(|b| !b.is_nan()).ok_or(format!("{name}: le={le:?} is not a number"))?;
            if let Some((previous_bound, previous_count)) = previous {
                if bound <= previous_bound {
                    return Err(format!("{name}{labels:?}: buckets not in increasing order of le at {le}"));
                }
                if bucket.value < previous_count {
                    return Err(format!("{name}{labels:?}: buckets not cumulative at le={le}"));
                }
            }
            previous = Some((bound, bucket.value));
        }
        match previous {
            Some((bound, inf)) if bound == f64::INFINITY => {
                if inf != count.value {
                    return Err(format!("{name}{labels:?}: the +Inf bucket {inf} is not _count {}", count.value));
                }
            }
            _ => return Err(format!("{name}{labels:?}: no le=\"+Inf\" bucket")),
        }
    }
    Ok(())
}
