//! A metric family computed at scrape time: each scrape builds a fresh vector, fills it
//! from its source (a kernel map, sysfs, /proc) and exports it. Nothing is shared between
//! scrapes, so two at once cannot see each other's half-filled values, and a series whose
//! source disappeared (a device unplugged) is simply not filled again.

use prometheus::{
    core::{Collector, Desc},
    proto::MetricFamily,
};

/// Builds an empty vector of the family (the definition: name, help, labels).
pub type Definition<V> = fn() -> prometheus::Result<V>;

/// Fills a fresh vector with the current samples.
pub type Fill<V> = Box<dyn Fn(&V) + Send + Sync>;

/// `V` is the family's metric vector type (`IntCounterVec`, `IntGaugeVec`).
pub struct Computed<V> {
    definition: Definition<V>,
    /// One empty instance, for `desc`.
    empty: V,
    /// `None`: the family is only defined (listing families, no source attached).
    fill: Option<Fill<V>>,
}

impl<V: Collector> Computed<V> {
    pub fn new(definition: Definition<V>, fill: Option<Fill<V>>) -> prometheus::Result<Self> {
        Ok(Self { empty: definition()?, definition, fill })
    }
}

impl<V: Collector + 'static> Collector for Computed<V> {
    fn desc(&self) -> Vec<&Desc> {
        self.empty.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let (Some(fill), Ok(vec)) = (&self.fill, (self.definition)()) else { return Vec::new() };
        fill(&vec);
        vec.collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    };

    use prometheus::{IntCounterVec, Opts};

    use super::*;

    fn definition() -> prometheus::Result<IntCounterVec> {
        IntCounterVec::new(Opts::new("x_total", "x"), &["k"])
    }

    #[test]
    fn every_scrape_starts_from_the_source() {
        let source = Arc::new(AtomicU64::new(3));
        let read = source.clone();
        let family = Computed::new(
            definition,
            Some(Box::new(move |v: &IntCounterVec| {
                v.with_label_values(&["a"]).inc_by(read.load(Ordering::Relaxed))
            })),
        )
        .unwrap();
        let value = |f: &Computed<_>| f.collect()[0].get_metric()[0].get_counter().get_value();
        assert_eq!(value(&family), 3.0);
        source.store(5, Ordering::Relaxed);
        assert_eq!(value(&family), 5.0, "not 8: nothing carried over from the last scrape");
        assert_eq!(family.desc()[0].fq_name, "x_total");
    }

    #[test]
    fn a_family_without_source_is_defined_but_empty() {
        let family = Computed::new(definition, None).unwrap();
        assert_eq!(family.desc().len(), 1);
        assert!(family.collect().is_empty());
    }
}
