//! collectd's `write_http` JSON (`Format "JSON"`) → value lists, with the same
//! limits as the binary protocol: identity strings below 128 bytes, at most
//! 65,535 values per list, value types as declared by `dstypes`.
//!
//! ```json
//! [{"values":[0.5],"dstypes":["gauge"],"dsnames":["value"],"time":1280959128.000,
//!   "interval":10.000,"host":"vm","plugin":"load","plugin_instance":"",
//!   "type":"load","type_instance":""}]
//! ```

use super::{
    CdTime, HR_PER_SECOND, Identity, MAX_STRING_BYTES, Protection, Str, Value, ValueList, Values,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Entry {
    values: Vec<serde_json::Value>,
    dstypes: Vec<String>,
    time: f64,
    #[serde(default)]
    interval: f64,
    host: String,
    plugin: String,
    #[serde(default)]
    plugin_instance: String,
    #[serde(rename = "type")]
    type_: String,
    #[serde(default)]
    type_instance: String,
}

/// Why a JSON body was refused (the whole body is refused).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("not collectd write_http JSON: {0}")]
    Syntax(String),
    #[error("value list {index}: {problem}")]
    Entry { index: usize, problem: String },
}

pub fn parse(body: &[u8]) -> Result<Vec<ValueList>, JsonError> {
    let entries: Vec<Entry> =
        serde_json::from_slice(body).map_err(|e| JsonError::Syntax(e.to_string()))?;
    entries
        .into_iter()
        .enumerate()
        .map(|(index, e)| value_list(e).map_err(|problem| JsonError::Entry { index, problem }))
        .collect()
}

fn value_list(e: Entry) -> Result<ValueList, String> {
    if e.values.len() != e.dstypes.len() {
        return Err(format!(
            "{} values but {} dstypes",
            e.values.len(),
            e.dstypes.len()
        ));
    }
    if e.values.is_empty() || e.values.len() > usize::from(u16::MAX) {
        return Err(format!("{} values; 1 to 65535 are allowed", e.values.len()));
    }
    let values = e
        .values
        .iter()
        .zip(&e.dstypes)
        .enumerate()
        .map(|(i, (v, t))| value(v, t).ok_or_else(|| format!("value {i} ({v}) is not a {t}")))
        .collect::<Result<Vec<Value>, String>>()?;
    let id = Identity {
        host: string("host", &e.host)?,
        plugin: string("plugin", &e.plugin)?,
        plugin_instance: string("plugin_instance", &e.plugin_instance)?,
        type_: string("type", &e.type_)?,
        type_instance: string("type_instance", &e.type_instance)?,
    };
    Ok(ValueList {
        id,
        time: seconds("time", e.time)?,
        interval: seconds("interval", e.interval)?,
        values: Values::new(&values),
        protection: Protection::None,
    })
}

fn value(v: &serde_json::Value, dstype: &str) -> Option<Value> {
    match dstype {
        // collectd writes an unknown gauge (NaN) as null.
        "gauge" if v.is_null() => Some(Value::Gauge(f64::NAN)),
        "gauge" => v.as_f64().map(Value::Gauge),
        "counter" => v.as_u64().map(Value::Counter),
        "derive" => v.as_i64().map(Value::Derive),
        "absolute" => v.as_u64().map(Value::Absolute),
        _ => None,
    }
}

fn string(field: &str, s: &str) -> Result<Str, String> {
    if s.len() >= MAX_STRING_BYTES {
        return Err(format!(
            "{field} is {} bytes, the limit is {}",
            s.len(),
            MAX_STRING_BYTES - 1
        ));
    }
    if s.contains('\0') {
        return Err(format!("{field} contains NUL"));
    }
    Ok(Str::from(s))
}

fn seconds(field: &str, s: f64) -> Result<CdTime, String> {
    if !s.is_finite() || s < 0.0 || s >= (u64::MAX >> 30) as f64 {
        return Err(format!("{field} {s} is not a time in seconds"));
    }
    Ok(CdTime((s * HR_PER_SECOND as f64) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_http_json_becomes_value_lists() {
        let body =
            br#"[{"values":[1901474177,null],"dstypes":["counter","gauge"],"dsnames":["a","b"],
            "time":1280959128.5,"interval":10.000,"host":"leeloo","plugin":"cpu",
            "plugin_instance":"0","type":"cpu","type_instance":"idle","meta":{"x":1}}]"#;
        let vls = parse(body).unwrap();
        let vl = &vls[0];
        assert_eq!(vl.id.type_instance.as_str(), "idle");
        assert_eq!(vl.time.as_secs_f64(), 1280959128.5);
        assert_eq!(
            vl.interval.as_duration(),
            std::time::Duration::from_secs(10)
        );
        let v: Vec<Value> = vl.values.iter().collect();
        assert_eq!(v[0], Value::Counter(1901474177));
        assert!(matches!(v[1], Value::Gauge(g) if g.is_nan()));
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        assert!(matches!(parse(b"{"), Err(JsonError::Syntax(_))));
        let e = parse(br#"[{"values":[1],"dstypes":["derive","gauge"],"time":1,"host":"h","plugin":"p","type":"t"}]"#);
        assert_eq!(
            e.unwrap_err().to_string(),
            "value list 0: 1 values but 2 dstypes"
        );
        let e = parse(br#"[{"values":[-1],"dstypes":["counter"],"time":1,"host":"h","plugin":"p","type":"t"}]"#);
        assert_eq!(
            e.unwrap_err().to_string(),
            "value list 0: value 0 (-1) is not a counter"
        );
        let long = "h".repeat(128);
        let body = format!(
            r#"[{{"values":[1],"dstypes":["gauge"],"time":1,"host":"{long}","plugin":"p","type":"t"}}]"#
        );
        assert_eq!(
            parse(body.as_bytes()).unwrap_err().to_string(),
            "value list 0: host is 128 bytes, the limit is 127"
        );
        let e = parse(
            br#"[{"values":[1],"dstypes":["gauge"],"time":-5,"host":"h","plugin":"p","type":"t"}]"#,
        );
        assert_eq!(
            e.unwrap_err().to_string(),
            "value list 0: time -5 is not a time in seconds"
        );
    }
}
