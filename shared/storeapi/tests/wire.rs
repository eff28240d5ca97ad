//! Wire format: every message survives encode/decode; golden bytes derived by
//! hand from the field numbers in formats.md pin the numbers and types (so they
//! are checked against Thanos, not only against ourselves); decoding arbitrary
//! bytes never panics.

use proptest::prelude::*;
use prost::Message;
use storeapi::pb::{self, info as ipb};

fn any_msg(url: &str, value: &[u8]) -> prost_types::Any {
    prost_types::Any {
        type_url: url.into(),
        value: value.to_vec(),
    }
}

fn label(n: &str, v: &str) -> pb::Label {
    pb::Label {
        name: n.into(),
        value: v.into(),
    }
}

fn matcher(t: pb::label_matcher::Type, n: &str, v: &str) -> pb::LabelMatcher {
    pb::LabelMatcher {
        r#type: t as i32,
        name: n.into(),
        value: v.into(),
    }
}

fn chunk(t: pb::chunk::Encoding, data: &[u8], hash: u64) -> pb::Chunk {
    pb::Chunk {
        r#type: t as i32,
        data: data.to_vec(),
        hash,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn golden<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M, want: &[u8]) {
    let got = msg.encode_to_vec();
    assert_eq!(hex(&got), hex(want), "encoding of {msg:?}");
    assert_eq!(&M::decode(want).unwrap(), msg);
}

fn full_series_request() -> pb::SeriesRequest {
    use pb::label_matcher::Type;
    pb::SeriesRequest {
        min_time: -1,
        max_time: 300,
        matchers: vec![matcher(Type::Nre, "a", "b")],
        max_resolution_window: 5,
        aggregates: vec![pb::Aggr::Count as i32, pb::Aggr::Counter as i32],
        partial_response_disabled: true,
        partial_response_strategy: pb::PartialResponseStrategy::Abort as i32,
        skip_chunks: true,
        hints: Some(any_msg("t", &[0xaa])),
        step: 7,
        range: 8,
        query_hints: Some(pb::QueryHints {
            step_millis: 2,
            func: Some(pb::Func { name: "f".into() }),
            grouping: Some(pb::Grouping {
                by: true,
                labels: vec!["g".into()],
            }),
            range: Some(pb::Range { millis: 3 }),
            projection_labels: vec!["p".into()],
            projection_include: true,
            series_hash_label_name: "h".into(),
        }),
        shard_info: Some(pb::ShardInfo {
            shard_index: 1,
            total_shards: 4,
            by: true,
            labels: vec!["s".into()],
        }),
        without_replica_labels: vec!["r".into()],
        limit: 10,
        response_batch_size: 64,
    }
}

#[test]
fn golden_series_request() {
    #[rustfmt::skip]
    let want: &[u8] = &[
        0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, // 1 min_time int64 -1
        0x10, 0xac, 0x02,                               // 2 max_time 300
        0x1a, 0x08, 0x08, 0x03, 0x12, 0x01, b'a', 0x1a, 0x01, b'b', // 3 matchers {NRE=3, a, b}
        0x20, 0x05,                                     // 4 max_resolution_window
        0x2a, 0x02, 0x01, 0x05,                         // 5 aggregates packed [COUNT=1, COUNTER=5]
        0x30, 0x01,                                     // 6 partial_response_disabled
        0x38, 0x01,                                     // 7 partial_response_strategy ABORT=1
        0x40, 0x01,                                     // 8 skip_chunks
        0x4a, 0x06, 0x0a, 0x01, b't', 0x12, 0x01, 0xaa, // 9 hints Any{type_url, value}
        0x50, 0x07,                                     // 10 step
        0x58, 0x08,                                     // 11 range
        0x62, 0x1a,                                     // 12 query_hints (26 bytes)
            0x08, 0x02,                                 //   1 step_millis
            0x12, 0x03, 0x0a, 0x01, b'f',               //   2 func{1 name}
            0x22, 0x05, 0x08, 0x01, 0x1a, 0x01, b'g',   //   4 grouping{1 by, 3 labels}
            0x2a, 0x02, 0x08, 0x03,                     //   5 range{1 millis}
            0x32, 0x01, b'p',                           //   6 projection_labels
            0x38, 0x01,                                 //   7 projection_include
            0x42, 0x01, b'h',                           //   8 series_hash_label_name
        0x6a, 0x09, 0x08, 0x01, 0x10, 0x04, 0x18, 0x01, 0x22, 0x01, b's', // 13 shard_info
        0x72, 0x01, b'r',                               // 14 without_replica_labels
        0x78, 0x0a,                                     // 15 limit
        0x80, 0x01, 0x40,                               // 16 response_batch_size (tag 128)
    ];
    golden(&full_series_request(), want);
}

#[test]
fn golden_series_responses() {
    use pb::series_response::Result as R;
    let series = pb::SeriesResponse {
        result: Some(R::Series(pb::Series {
            labels: vec![label("a", "b")],
            chunks: vec![pb::AggrChunk {
                min_time: 1,
                max_time: 2,
                raw: Some(chunk(pb::chunk::Encoding::Histogram, &[0xde, 0xad], 5)),
                counter: Some(chunk(pb::chunk::Encoding::Xor, &[1], 0)),
                ..Default::default()
            }],
        })),
    };
    #[rustfmt::skip]
    golden(&series, &[
        0x0a, 0x1d,                                         // 1 series (29 bytes)
            0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b', //   1 labels {1 name, 2 value}
            0x12, 0x13,                                     //   2 chunks: AggrChunk (19 bytes)
                0x08, 0x01,                                 //     1 min_time
                0x10, 0x02,                                 //     2 max_time
                0x1a, 0x08,                                 //     3 raw Chunk
                    0x08, 0x01,                             //       1 type HISTOGRAM=1
                    0x12, 0x02, 0xde, 0xad,                 //       2 data
                    0x18, 0x05,                             //       3 hash uint64
                0x42, 0x03, 0x12, 0x01, 0x01,               //     8 counter Chunk (XOR=0 omitted)
    ]);
    golden(
        &pb::SeriesResponse {
            result: Some(R::Warning("w".into())),
        },
        &[0x12, 0x01, b'w'],
    );
    golden(
        &pb::SeriesResponse {
            result: Some(R::Hints(any_msg("x", &[]))),
        },
        &[0x1a, 0x03, 0x0a, 0x01, b'x'],
    );
    golden(
        &pb::SeriesResponse {
            result: Some(R::Batch(pb::SeriesBatch {
                series: vec![pb::Series::default()],
            })),
        },
        &[0x22, 0x02, 0x0a, 0x00],
    );
}

#[test]
fn golden_label_requests_and_responses() {
    use pb::label_matcher::Type;
    let abort = pb::PartialResponseStrategy::Abort as i32;
    #[rustfmt::skip]
    golden(
        &pb::LabelNamesRequest {
            partial_response_disabled: true,
            partial_response_strategy: abort,
            start: 3,
            end: 4,
            hints: Some(any_msg("x", &[])),
            matchers: vec![matcher(Type::Eq, "a", "b")],
            without_replica_labels: vec!["r".into()],
            limit: 9,
        },
        &[
            0x08, 0x01, 0x10, 0x01, 0x18, 0x03, 0x20, 0x04,
            0x2a, 0x03, 0x0a, 0x01, b'x',
            0x32, 0x06, 0x12, 0x01, b'a', 0x1a, 0x01, b'b', // EQ=0 omitted
            0x3a, 0x01, b'r',
            0x40, 0x09,
        ],
    );
    #[rustfmt::skip]
    golden(
        &pb::LabelValuesRequest {
            label: "l".into(),
            partial_response_disabled: true,
            partial_response_strategy: abort,
            start: 3,
            end: 4,
            hints: Some(any_msg("x", &[])),
            matchers: vec![matcher(Type::Neq, "a", "b")],
            without_replica_labels: vec!["r".into()],
            limit: 9,
        },
        &[
            0x0a, 0x01, b'l', 0x10, 0x01, 0x18, 0x01, 0x20, 0x03, 0x28, 0x04,
            0x32, 0x03, 0x0a, 0x01, b'x',
            0x3a, 0x08, 0x08, 0x01, 0x12, 0x01, b'a', 0x1a, 0x01, b'b',
            0x42, 0x01, b'r',
            0x48, 0x09,
        ],
    );
    golden(
        &pb::LabelNamesResponse {
            names: vec!["n".into()],
            warnings: vec!["w".into()],
            hints: Some(any_msg("x", &[])),
        },
        &[
            0x0a, 0x01, b'n', 0x12, 0x01, b'w', 0x1a, 0x03, 0x0a, 0x01, b'x',
        ],
    );
    golden(
        &pb::LabelValuesResponse {
            values: vec!["v".into()],
            warnings: vec![],
            hints: None,
        },
        &[0x0a, 0x01, b'v'],
    );
}

fn full_info() -> ipb::InfoResponse {
    ipb::InfoResponse {
        label_sets: vec![pb::ZLabelSet {
            labels: vec![label("a", "b")],
        }],
        component_type: "store".into(),
        store: Some(ipb::StoreInfo {
            min_time: 1,
            max_time: 2,
            supports_sharding: true,
            supports_without_replica_labels: true,
            tsdb_infos: vec![ipb::TsdbInfo {
                labels: None,
                min_time: 3,
                max_time: 4,
            }],
            supports_projections: true,
        }),
        rules: Some(ipb::RulesInfo {}),
        metric_metadata: Some(ipb::MetricMetadataInfo {}),
        targets: Some(ipb::TargetsInfo {}),
        exemplars: Some(ipb::ExemplarsInfo {
            min_time: 5,
            max_time: 6,
        }),
        query: Some(ipb::QueryApiInfo {}),
        status: Some(ipb::StatusInfo {}),
    }
}

#[test]
fn golden_info_response() {
    #[rustfmt::skip]
    golden(&full_info(), &[
        0x0a, 0x08, 0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b', // 1 label_sets
        0x12, 0x05, b's', b't', b'o', b'r', b'e',                    // 2 ComponentType
        0x1a, 0x10,                                                  // 3 store (16 bytes)
            0x08, 0x01, 0x10, 0x02, 0x18, 0x01,                      //   1 min, 2 max, 3 sharding
            0x28, 0x01,                                              //   5 without_replica_labels
            0x32, 0x04, 0x10, 0x03, 0x18, 0x04,                      //   6 tsdb_infos {2 min, 3 max}
            0x38, 0x01,                                              //   7 supports_projections
        0x22, 0x00,                                                  // 4 rules
        0x2a, 0x00,                                                  // 5 metric_metadata
        0x32, 0x00,                                                  // 6 targets
        0x3a, 0x04, 0x08, 0x05, 0x10, 0x06,                          // 7 exemplars
        0x42, 0x00,                                                  // 8 query
        0x4a, 0x00,                                                  // 9 status
    ]);
    golden(&ipb::InfoRequest {}, &[]);
}

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(m: M) {
    let bytes = m.encode_to_vec();
    assert_eq!(bytes.len(), m.encoded_len());
    assert_eq!(M::decode(bytes.as_slice()).unwrap(), m);
}

#[test]
fn every_message_round_trips() {
    use pb::series_response::Result as R;
    let l = label("__name__", "up\u{1F600}");
    let c = chunk(
        pb::chunk::Encoding::FloatHistogram,
        &[0, 1, 2, 255],
        u64::MAX,
    );
    let aggr = pb::AggrChunk {
        min_time: i64::MIN,
        max_time: i64::MAX,
        raw: Some(c.clone()),
        count: Some(c.clone()),
        sum: Some(c.clone()),
        min: Some(c.clone()),
        max: Some(c.clone()),
        counter: Some(c.clone()),
    };
    let series = pb::Series {
        labels: vec![l.clone(), label("job", "")],
        chunks: vec![aggr.clone(), pb::AggrChunk::default()],
    };
    round_trip(l.clone());
    round_trip(pb::LabelSet {
        labels: vec![l.clone()],
    });
    round_trip(pb::ZLabelSet {
        labels: vec![l.clone()],
    });
    round_trip(c.clone());
    round_trip(aggr);
    round_trip(series.clone());
    round_trip(pb::SeriesBatch {
        series: vec![series.clone(), series.clone()],
    });
    round_trip(matcher(pb::label_matcher::Type::Re, "a", ".*"));
    round_trip(full_series_request());
    round_trip(pb::SeriesRequest::default());
    round_trip(pb::QueryHints::default());
    round_trip(pb::ShardInfo::default());
    round_trip(pb::Func {
        name: "rate".into(),
    });
    round_trip(pb::Grouping {
        by: false,
        labels: vec!["a".into(), "b".into()],
    });
    round_trip(pb::Range { millis: -5 });
    for r in [
        R::Series(series.clone()),
        R::Warning("warn".into()),
        R::Hints(any_msg("type.googleapis.com/x", b"\x00\x01")),
        R::Batch(pb::SeriesBatch {
            series: vec![series],
        }),
    ] {
        round_trip(pb::SeriesResponse { result: Some(r) });
    }
    round_trip(pb::SeriesResponse { result: None });
    round_trip(pb::LabelNamesRequest {
        matchers: vec![matcher(pb::label_matcher::Type::Nre, "x", "y")],
        start: -10,
        end: 10,
        ..Default::default()
    });
    round_trip(pb::LabelNamesResponse {
        names: vec!["a".into()],
        warnings: vec!["w".into()],
        hints: Some(any_msg("u", b"v")),
    });
    round_trip(pb::LabelValuesRequest {
        label: "job".into(),
        limit: 3,
        ..Default::default()
    });
    round_trip(pb::LabelValuesResponse {
        values: vec!["v".into()],
        ..Default::default()
    });
    round_trip(full_info());
    round_trip(ipb::InfoResponse::default());
    round_trip(ipb::InfoRequest {});
    round_trip(ipb::StoreInfo::default());
    round_trip(ipb::TsdbInfo {
        labels: Some(pb::ZLabelSet {
            labels: vec![label("a", "b")],
        }),
        min_time: 1,
        max_time: 2,
    });
    round_trip(ipb::ExemplarsInfo {
        min_time: 1,
        max_time: 2,
    });
}

#[test]
fn enum_numbers() {
    use pb::label_matcher::Type;
    assert_eq!(
        [Type::Eq, Type::Neq, Type::Re, Type::Nre].map(|t| t as i32),
        [0, 1, 2, 3]
    );
    use pb::chunk::Encoding;
    assert_eq!(
        [Encoding::Xor, Encoding::Histogram, Encoding::FloatHistogram].map(|e| e as i32),
        [0, 1, 2]
    );
    use pb::Aggr;
    assert_eq!(
        [
            Aggr::Raw,
            Aggr::Count,
            Aggr::Sum,
            Aggr::Min,
            Aggr::Max,
            Aggr::Counter
        ]
        .map(|a| a as i32),
        [0, 1, 2, 3, 4, 5]
    );
    assert_eq!(pb::PartialResponseStrategy::Warn as i32, 0);
    assert_eq!(pb::PartialResponseStrategy::Abort as i32, 1);
}

#[test]
fn unknown_fields_and_enum_values_are_tolerated() {
    // A SeriesRequest from a newer Thanos: unknown field 99 (varint) and an
    // unknown matcher type 9. Decoding keeps going; converting the matcher fails.
    let mut bytes = vec![0x08, 0x01];
    bytes.extend([0x98, 0x06, 0x01]); // field 99, wire type 0
    bytes.extend([0x1a, 0x02, 0x08, 0x09]);
    let req = pb::SeriesRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(req.min_time, 1);
    assert_eq!(req.matchers[0].r#type, 9);
    assert!(matches!(
        storeapi::convert::matchers_from_pb(&req.matchers),
        Err(storeapi::Error::InvalidArgument(_))
    ));
}

/// Everything a receiver does with untrusted frames: decode, convert labels and
/// matchers, iterate chunks.
fn consume(bytes: &[u8]) {
    if let Ok(r) = pb::SeriesResponse::decode(bytes) {
        let series = match r.result {
            Some(pb::series_response::Result::Series(s)) => vec![s],
            Some(pb::series_response::Result::Batch(b)) => b.series,
            _ => vec![],
        };
        for s in series {
            let _ = storeapi::convert::series_labels(&s);
            for c in &s.chunks {
                for ch in [&c.raw, &c.count, &c.sum, &c.min, &c.max, &c.counter]
                    .into_iter()
                    .flatten()
                {
                    if let Ok(it) = storeapi::chunk::iter_wire_chunk(ch) {
                        for _ in it.take(100_000) {}
                    }
                }
            }
            let _ = storeapi::merge::merge_chunks(s.chunks);
        }
    }
    if let Ok(r) = pb::SeriesRequest::decode(bytes) {
        let _ = storeapi::convert::matchers_from_pb(&r.matchers);
    }
    let _ = ipb::InfoResponse::decode(bytes);
    let _ = pb::LabelValuesRequest::decode(bytes);
    let _ = pb::LabelNamesRequest::decode(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        consume(&bytes);
    }

    /// Mutations of valid frames reach deeper than random bytes.
    #[test]
    fn decoding_mutated_frames_never_panics(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        which in 0usize..3,
    ) {
        let mut bytes = match which {
            0 => full_series_request().encode_to_vec(),
            1 => full_info().encode_to_vec(),
            _ => {
                let mut x = tsdb::chunkenc::XorChunk::new();
                for i in 0..50 {
                    x.append(i * 1000, (i as f64).sqrt());
                }
                pb::SeriesResponse {
                    result: Some(pb::series_response::Result::Series(pb::Series {
                        labels: vec![label("a", "b")],
                        chunks: vec![storeapi::chunk::raw_aggr_chunk(
                            0,
                            49_000,
                            chunk(pb::chunk::Encoding::Xor, x.bytes(), 0),
                        )],
                    })),
                }
                .encode_to_vec()
            }
        };
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let n = cut.index(bytes.len() + 1);
        consume(&bytes[..n]);
        consume(&bytes);
    }
}
