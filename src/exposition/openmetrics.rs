//! OpenMetrics text through the `prometheus-client` crate: the family table
//! is encoded by a `Collector` over one scrape snapshot, so no metric object
//! is kept in sync with the stores.

use super::families::{self, Family, FamilyWriter, Kind, Labels, Number, SampleWriter, Scrape};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::Arc;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Encodes `scrape`, `# EOF` included.
pub fn encode(scrape: Arc<Scrape>, out: &mut String) -> fmt::Result {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ScrapeCollector(scrape)));
    prometheus_client::encoding::text::encode(out, &registry)
}

#[derive(Debug)]
struct ScrapeCollector(Arc<Scrape>);

impl Collector for ScrapeCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        families::write(&self.0, &mut Writer(encoder))
    }
}

struct Writer<'a>(DescriptorEncoder<'a>);

impl FamilyWriter for Writer<'_> {
    fn family(
        &mut self,
        family: &Family<'_>,
        samples: &mut dyn FnMut(&mut dyn SampleWriter) -> fmt::Result,
    ) -> fmt::Result {
        let metric_type = match family.kind {
            Kind::Gauge => MetricType::Gauge,
            Kind::Counter => MetricType::Counter,
        };
        let mut encoder = self
            .0
            .encode_descriptor(family.name, family.help, None, metric_type)?;
        samples(&mut Samples {
            encoder: &mut encoder,
            kind: family.kind,
        })
    }
}

struct Samples<'a, 'b> {
    encoder: &'a mut MetricEncoder<'b>,
    kind: Kind,
}

impl SampleWriter for Samples<'_, '_> {
    fn sample(&mut self, labels: &Labels<'_>, value: Number) -> fmt::Result {
        if labels.is_empty() {
            put(self.encoder, self.kind, value)
        } else {
            put(&mut self.encoder.encode_family(&labels)?, self.kind, value)
        }
    }
}

fn put(e: &mut MetricEncoder<'_>, kind: Kind, value: Number) -> fmt::Result {
    match (kind, value) {
        (Kind::Counter, Number::U64(n)) => e.encode_counter::<NoLabelSet, _, u64>(&n, None),
        (Kind::Counter, Number::F64(x)) => e.encode_counter::<NoLabelSet, _, f64>(&x, None),
        (Kind::Gauge, Number::U64(n)) => e.encode_gauge(&n),
        (Kind::Gauge, Number::F64(x)) => e.encode_gauge(&x),
    }
}
