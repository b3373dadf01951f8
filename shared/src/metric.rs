//! One exported metric as a binary's table declares it: name, kind, unit, help and label names.
//! Series are made and recorded only through a [`Metric`], so a metric cannot be exported
//! without its `# HELP` line, nor with a label its table does not name.

use metrics::{
    Counter, Gauge, Histogram, Label, Unit, counter, describe_counter, describe_gauge,
    describe_histogram, gauge, histogram,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Option<Unit>,
    pub help: &'static str,
    /// The label names of every series, in the order their values are given.
    pub labels: &'static [&'static str],
}

impl Metric {
    pub const fn new_counter(name: &'static str, help: &'static str) -> Self {
        Self::new(name, Kind::Counter, help)
    }

    pub const fn new_gauge(name: &'static str, help: &'static str) -> Self {
        Self::new(name, Kind::Gauge, help)
    }

    pub const fn new_histogram(name: &'static str, help: &'static str) -> Self {
        Self::new(name, Kind::Histogram, help)
    }

    const fn new(name: &'static str, kind: Kind, help: &'static str) -> Self {
        Self {
            name,
            kind,
            unit: None,
            help,
            labels: &[],
        }
    }

    pub const fn unit(mut self, unit: Unit) -> Self {
        self.unit = Some(unit);
        self
    }

    pub const fn labels(mut self, labels: &'static [&'static str]) -> Self {
        self.labels = labels;
        self
    }

    /// Gives the metric its `# HELP` line.
    pub fn describe(&self) {
        let (name, help) = (self.name, self.help);
        match (self.kind, self.unit) {
            (Kind::Counter, Some(unit)) => describe_counter!(name, unit, help),
            (Kind::Counter, None) => describe_counter!(name, help),
            (Kind::Gauge, Some(unit)) => describe_gauge!(name, unit, help),
            (Kind::Gauge, None) => describe_gauge!(name, help),
            (Kind::Histogram, Some(unit)) => describe_histogram!(name, unit, help),
            (Kind::Histogram, None) => describe_histogram!(name, help),
        }
    }

    /// Makes the series with these label values exist from start-up, at 0, so dashboards and
    /// alerts never see "no data". `increment(0)` only: a test process runs several apps on one
    /// recorder, and an `absolute(0)`/`set(0)` here would wipe another app's values.
    pub fn register(&self, values: &[&str]) {
        match self.kind {
            Kind::Counter => self.counter(values).increment(0),
            Kind::Gauge => self.gauge(values).increment(0.0),
            Kind::Histogram => {
                let _ = self.histogram(values);
            }
        }
    }

    pub fn counter(&self, values: &[&str]) -> Counter {
        debug_assert_eq!(self.kind, Kind::Counter, "{}", self.name);
        counter!(self.name, self.series(values))
    }

    pub fn gauge(&self, values: &[&str]) -> Gauge {
        debug_assert_eq!(self.kind, Kind::Gauge, "{}", self.name);
        gauge!(self.name, self.series(values))
    }

    pub fn histogram(&self, values: &[&str]) -> Histogram {
        debug_assert_eq!(self.kind, Kind::Histogram, "{}", self.name);
        histogram!(self.name, self.series(values))
    }

    fn series(&self, values: &[&str]) -> Vec<Label> {
        assert_eq!(
            values.len(),
            self.labels.len(),
            "{}: one value per label of {:?}",
            self.name,
            self.labels
        );
        self.labels
            .iter()
            .zip(values)
            .map(|(name, value)| Label::new(*name, (*value).to_owned()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "one value per label")]
    fn a_series_names_every_label_of_its_metric() {
        let metric = Metric::new_counter("a_total", "A.").labels(&["result"]);
        let _ = metric.counter(&[]);
    }
}
