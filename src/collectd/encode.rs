//! Value lists → bytes, in the two layouts that reach the exporter: the
//! sqlalchemy-collectd client's (every part, fixed order, whole seconds) and
//! collectd's (a part only when it changed since the previous value list,
//! high-resolution times). Tests and the load generator use it.

use super::{CdTime, Identity, Value, part};
use bytes::{BufMut, Bytes, BytesMut};

/// Appends parts to one datagram.
#[derive(Default)]
pub struct Encoder {
    buf: BytesMut,
    state: PartState,
}

/// What collectd's writer remembers between value lists of one datagram, so
/// that it writes only the parts that changed.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct PartState {
    host: Option<String>,
    plugin: Option<String>,
    plugin_instance: Option<String>,
    type_: Option<String>,
    type_instance: Option<String>,
    time: Option<u64>,
    interval: Option<u64>,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// A string part: the bytes and a NUL.
    pub fn string(&mut self, part_type: u16, s: &str) -> &mut Self {
        self.raw_string(part_type, s.as_bytes())
    }

    /// A string part from arbitrary bytes (tests use it for invalid input).
    pub fn raw_string(&mut self, part_type: u16, s: &[u8]) -> &mut Self {
        self.header(part_type, 4 + s.len() + 1);
        self.buf.put_slice(s);
        self.buf.put_u8(0);
        self
    }

    /// A numeric part (TIME, TIME_HR, INTERVAL, INTERVAL_HR, SEVERITY).
    pub fn number(&mut self, part_type: u16, n: u64) -> &mut Self {
        self.header(part_type, 12);
        self.buf.put_u64(n);
        self
    }

    /// A VALUES part.
    pub fn values(&mut self, values: &[Value]) -> &mut Self {
        self.header(part::VALUES, 4 + 2 + 9 * values.len());
        self.buf.put_u16(values.len() as u16);
        for v in values {
            self.buf.put_u8(v.type_code());
        }
        for v in values {
            match *v {
                Value::Counter(n) | Value::Absolute(n) => self.buf.put_u64(n),
                Value::Gauge(g) => self.buf.put_f64_le(g),
                Value::Derive(d) => self.buf.put_i64(d),
            }
        }
        self
    }

    /// Any bytes, for parts this encoder does not know.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.put_slice(bytes);
        self
    }

    /// One value list as the sqlalchemy-collectd 0.0.8 client writes it:
    /// HOST, TIME, PLUGIN, PLUGIN_INSTANCE, TYPE, INTERVAL, TYPE_INSTANCE,
    /// VALUES, every part present, times in whole seconds.
    pub fn client_value_list(
        &mut self,
        id: &Identity,
        time_secs: u64,
        interval_secs: u64,
        values: &[Value],
    ) -> &mut Self {
        self.string(part::HOST, id.host.as_str())
            .number(part::TIME, time_secs)
            .string(part::PLUGIN, id.plugin.as_str())
            .string(part::PLUGIN_INSTANCE, id.plugin_instance.as_str())
            .string(part::TYPE, id.type_.as_str())
            .number(part::INTERVAL, interval_secs)
            .string(part::TYPE_INSTANCE, id.type_instance.as_str())
            .values(values)
    }

    /// One value list as collectd's network plugin writes it: TIME_HR and
    /// INTERVAL_HR, and only the parts that differ from the previous value
    /// list of this datagram (an empty string is omitted only while nothing
    /// was written before it).
    pub fn collectd_value_list(
        &mut self,
        id: &Identity,
        time: CdTime,
        interval: CdTime,
        values: &[Value],
    ) -> &mut Self {
        let strings = [
            (part::HOST, id.host.as_str()),
            (part::TIME_HR, ""),
            (part::INTERVAL_HR, ""),
            (part::PLUGIN, id.plugin.as_str()),
            (part::PLUGIN_INSTANCE, id.plugin_instance.as_str()),
            (part::TYPE, id.type_.as_str()),
            (part::TYPE_INSTANCE, id.type_instance.as_str()),
        ];
        for (part_type, s) in strings {
            match part_type {
                part::TIME_HR => {
                    if self.state.time != Some(time.0) {
                        self.state.time = Some(time.0);
                        self.number(part::TIME_HR, time.0);
                    }
                }
                part::INTERVAL_HR => {
                    if self.state.interval != Some(interval.0) {
                        self.state.interval = Some(interval.0);
                        self.number(part::INTERVAL_HR, interval.0);
                    }
                }
                _ => {
                    let slot = match part_type {
                        part::HOST => &mut self.state.host,
                        part::PLUGIN => &mut self.state.plugin,
                        part::PLUGIN_INSTANCE => &mut self.state.plugin_instance,
                        part::TYPE => &mut self.state.type_,
                        _ => &mut self.state.type_instance,
                    };
                    let unchanged = match slot {
                        Some(prev) => prev == s,
                        None => s.is_empty(),
                    };
                    if !unchanged {
                        *slot = Some(s.to_owned());
                        self.string(part_type, s);
                    }
                }
            }
        }
        self.values(values)
    }

    /// The datagram so far; the encoder starts over, state included.
    pub fn finish(&mut self) -> Bytes {
        self.state = PartState::default();
        self.buf.split().freeze()
    }

    fn header(&mut self, part_type: u16, len: usize) {
        // Parts longer than a u16 cannot be expressed; callers build
        // datagrams, which are far smaller.
        self.buf.put_u16(part_type);
        self.buf.put_u16(len.min(usize::from(u16::MAX)) as u16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectd::decode;

    fn id(host: &str, plugin: &str, pi: &str, t: &str, ti: &str) -> Identity {
        Identity {
            host: host.into(),
            plugin: plugin.into(),
            plugin_instance: pi.into(),
            type_: t.into(),
            type_instance: ti.into(),
        }
    }

    #[test]
    fn collectd_layout_round_trips_with_delta_parts() {
        let mut e = Encoder::new();
        let t = CdTime(1795289844 << 30);
        let i = CdTime(1 << 30);
        e.collectd_value_list(
            &id("vm", "load", "", "load", ""),
            t,
            i,
            &[Value::Gauge(0.5), Value::Gauge(0.25), Value::Gauge(0.125)],
        );
        e.collectd_value_list(
            &id("vm", "cpu", "0", "cpu", "idle"),
            t,
            i,
            &[Value::Derive(10)],
        );
        e.collectd_value_list(&id("vm", "cpu", "", "cpu", ""), t, i, &[Value::Derive(11)]);
        let raw = e.finish();
        let packet = decode(&raw).expect("decodes");
        let ids: Vec<_> = packet.value_lists.iter().map(|v| v.id.clone()).collect();
        assert_eq!(
            ids,
            vec![
                id("vm", "load", "", "load", ""),
                id("vm", "cpu", "0", "cpu", "idle"),
                id("vm", "cpu", "", "cpu", ""),
            ]
        );
        assert!(
            packet
                .value_lists
                .iter()
                .all(|v| v.time == t && v.interval == i)
        );
    }
}
