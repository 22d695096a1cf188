//! Tests of the kafka sink's batches in flight (`max_in_flight_batches`):
//! the window unit by unit (out-of-order completion, retries, stale
//! reports) and against librdkafka's mock cluster (20 quick batches each
//! delivered once, the durable mark's bounds, a broker outage mid-run, the
//! shutdown deadline of `flush`).

use std::time::{Duration, Instant};

use pipeline::{Event, Sink};
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaApiKey, RDKafkaErrorCode, RDKafkaRespErr};

use super::producer::{KafkaMetrics, Shared};
use super::tests::{assert_each_event_once, cluster, events, sink_for};
use super::window::{opaque, Backoff, Outgoing, Window};
use super::KafkaSink;

fn window() -> (Window, Shared) {
    let backoff = Backoff { initial: Duration::from_millis(10), max: Duration::from_millis(100) };
    (Window::new(KafkaMetrics::new("k", "t"), backoff, "t".to_owned()), Shared::new("k", "b:9092"))
}

fn messages(n: usize) -> Vec<Outgoing> {
    (0..n).map(|i| Outgoing::new(vec![i as u8], None, "m")).collect()
}

fn report(shared: &Shared, seq: u64, index: usize, error: Option<RDKafkaErrorCode>) {
    let error = error.map(KafkaError::MessageProduction);
    super::producer::lock(&shared.reports).push((opaque(seq, index), error));
}

#[test]
fn the_durable_mark_never_passes_an_incomplete_batch() {
    let (mut window, shared) = window();
    for _ in 0..3 {
        window.push(messages(2)).expect("push");
    }
    window.push(Vec::new()).expect("an empty batch");
    assert_eq!((window.n_durable(), window.n_unacknowledged()), (0, 4));

    // Batches 1 and 2 complete first; batch 0's first message fails.
    for (seq, index) in [(1, 0), (1, 1), (2, 1), (2, 0), (0, 1)] {
        report(&shared, seq, index, None);
    }
    report(&shared, 0, 0, Some(RDKafkaErrorCode::TopicAuthorizationFailed));
    window.take_reports(&shared, None).expect("a retriable failure");
    assert_eq!(window.n_durable(), 0, "batch 0 is incomplete, so nothing after it is durable");
    assert_eq!(window.n_pending_messages(), 1);
    assert!(window.next_retry().is_some(), "the failed message is due again");
    assert_eq!(window.n_failed_attempts, 1);

    // A stale report (a batch no longer in the window) changes nothing.
    report(&shared, 77, 0, None);
    window.take_reports(&shared, None).expect("stale reports are ignored");
    assert_eq!(window.n_durable(), 0);

    report(&shared, 0, 0, None);
    window.take_reports(&shared, None).expect("delivered on retry");
    assert_eq!(window.n_durable(), 4, "batch 0 done: 1 and 2 (done earlier) and the empty 3 follow");
    assert_eq!(window.n_unacknowledged(), 0);
    window.push(Vec::new()).expect("an empty batch");
    assert_eq!(window.n_durable(), 5, "an empty batch behind nothing is durable at once");
}

#[test]
fn a_permanent_error_fails_every_later_call() {
    let (mut window, shared) = window();
    window.push(messages(2)).expect("push");
    report(&shared, 0, 0, None);
    report(&shared, 0, 1, Some(RDKafkaErrorCode::MessageSizeTooLarge));
    let error = window.take_reports(&shared, None).expect_err("no retry fixes a message too large");
    assert!(error.to_string().contains("for good"), "{error}");
    assert_eq!(window.n_durable(), 0, "the mark stays where it was");
    assert!(window.check().is_err(), "and the sink stays failed");
    assert!(window.push(messages(1)).is_ok() && window.pump(&shared, None).is_err());
}

/// `batch`'s events split into `n` batches.
fn split(batch: &[Event], n: usize) -> Vec<Vec<Event>> {
    batch.chunks(batch.len().div_ceil(n)).map(<[Event]>::to_vec).collect()
}

/// Writes every batch, sampling the durable mark after each write: it
/// never falls and never passes the batches written, and with `limit`
/// batches in flight at most `limit - 1` are unacknowledged when `write`
/// returns. Returns whether it ever lagged.
async fn write_all(sink: &mut KafkaSink, batches: Vec<Vec<Event>>, written: &mut u64, limit: u64) -> bool {
    let mut lagged = false;
    let mut last = sink.durable_batches().expect("kafka reports durability");
    for batch in batches {
        sink.write(batch).await.expect("write");
        *written += 1;
        let durable = sink.durable_batches().expect("some");
        assert!(durable >= last, "monotone: {durable} after {last}");
        assert!(durable <= *written, "{durable} durable of {written} written");
        assert!(*written - durable < limit, "{durable} durable of {written} written, limit {limit}");
        lagged |= durable < *written;
        last = durable;
    }
    lagged
}

#[tokio::test]
async fn twenty_quick_batches_are_in_flight_together_and_arrive_once() {
    let cluster = cluster();
    let mut sink = sink_for(&cluster, "encoding = \"json\"\nmax_in_flight_batches = 4");
    sink.open().await.expect("open");
    let all = events(40);
    let mut written = 0;
    let lagged = write_all(&mut sink, split(&all, 20), &mut written, 4).await;
    assert_eq!(written, 20);
    assert!(lagged, "write returned before its batch was acknowledged");
    sink.flush().await.expect("flush");
    assert_eq!(sink.durable_batches(), Some(20), "everything durable after flush");
    assert_each_event_once(&cluster, &all, all.len()).await;
}

#[tokio::test]
async fn the_durable_mark_waits_for_a_retried_batch() {
    let cluster = cluster();
    let mut sink = sink_for(&cluster, "encoding = \"json\"\nmax_in_flight_batches = 8");
    sink.open().await.expect("open");
    // The first produce request fails for good in librdkafka's eyes; the
    // sink retries its messages after later batches went through.
    cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED]);
    let all = events(30);
    let mut written = 0;
    write_all(&mut sink, split(&all, 10), &mut written, 8).await;
    // The engine's view between writes: poll and tick until all is durable.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = 0;
    while sink.durable_batches() != Some(written) {
        assert!(Instant::now() < deadline, "stuck at {:?} of {written}", sink.durable_batches());
        sink.on_tick().await.expect("tick");
        let durable = sink.durable_batches().expect("some");
        assert!(durable >= last && durable <= written, "{last} -> {durable} of {written}");
        last = durable;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(sink.attempt_counts().0 > 0, "the injected error failed a delivery");
    sink.flush().await.expect("flush");
    assert_eq!(sink.durable_batches(), Some(10));
    assert_each_event_once(&cluster, &all, all.len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_mid_run_is_waited_out_then_everything_is_durable() {
    let cluster = cluster();
    let mut sink = sink_for(&cluster, "encoding = \"json\"\nmax_in_flight_batches = 4");
    sink.open().await.expect("open");
    let all = events(60);
    let mut batches = split(&all, 15);
    let later = batches.split_off(5);
    let mut written = 0;
    write_all(&mut sink, batches, &mut written, 4).await;
    sink.flush().await.expect("flush");
    assert_eq!(sink.durable_batches(), Some(5));

    cluster.broker_down(1).expect("broker down");
    let writer = tokio::spawn(async move {
        let mut written = 5;
        write_all(&mut sink, later, &mut written, 4).await;
        (sink, written)
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!writer.is_finished(), "with the broker down the window fills and write waits");

    cluster.broker_up(1).expect("broker up");
    let (mut sink, written) = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("writes finish once the broker is back")
        .expect("task");
    assert_eq!(written, 15);
    sink.flush().await.expect("flush");
    assert_eq!(sink.durable_batches(), Some(15), "durable == written");
    assert_each_event_once(&cluster, &all, all.len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_waits_out_an_outage_until_stopping_then_gives_up_after_flush_timeout() {
    let cluster = cluster();
    cluster.broker_down(1).expect("broker down");
    let (trigger, signal) = pipeline::shutdown_channel();
    let mut sink = sink_for(&cluster, "encoding = \"json\"\nflush_timeout_secs = 0.5");
    sink.set_shutdown(signal);
    sink.open().await.expect("open");
    sink.write(events(2)).await.expect("enqueued: one batch of four in flight");
    let flusher = tokio::spawn(async move {
        let result = sink.flush().await;
        (sink, result)
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!flusher.is_finished(), "not stopping: flush waits for the broker like a write does");

    let stopped = Instant::now();
    trigger.trigger();
    let (mut sink, result) =
        tokio::time::timeout(Duration::from_secs(10), flusher).await.expect("flush gives up").expect("task");
    let error = result.expect_err("the broker never came back");
    assert!(stopped.elapsed() >= Duration::from_millis(500), "not before flush_timeout_secs");
    assert!(
        error
            .to_string()
            .contains("kafka flush gave up 500ms after the agent began stopping, with 10 messages of 1 batches"),
        "{error}"
    );
    assert_eq!(sink.durable_batches(), Some(0), "nothing durable, nothing counted");
    assert!(sink.write(events(1)).await.is_err(), "the sink stays failed");
}
