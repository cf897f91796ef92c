"""Kafka plumbing, one module per concern (see each module's docstring for its contract):

- `admin`: topic creation (`ensure_topics`, `keep_topics`) and partition listing;
- `producer`: `make_producer`, `produce`, `produce_many` (no acknowledgement trusted across a
  broken connection);
- `decoding`: `decode_event`, `Decoded`, `DecodeError` (dead-letter reasons);
- `deadletters`: `DeadLetters`, the dead-letter sink (wire format and topic given by the caller);
- `consumer`: `BatchConsumer`, the one commit path (decode, handle, drain, commit offsets);
- `workarounds`: every aiokafka patch, applied by `workarounds.apply()` at start-up.

The public names are re-exported here.
"""

from nervewatch.kafka.admin import ensure_topics, keep_topics, topic_partitions
from nervewatch.kafka.consumer import TRANSIENT_ERRORS, BatchConsumer, ConsumerClient, Drainable, is_transient
from nervewatch.kafka.deadletters import DeadLetters, Letter
from nervewatch.kafka.decoding import Decoded, DecodeError, decode_event
from nervewatch.kafka.producer import PRODUCER_BATCH_BYTES, link_of, make_producer, produce, produce_many

__all__ = [
    "PRODUCER_BATCH_BYTES",
    "TRANSIENT_ERRORS",
    "BatchConsumer",
    "ConsumerClient",
    "DeadLetters",
    "DecodeError",
    "Decoded",
    "Drainable",
    "Letter",
    "decode_event",
    "ensure_topics",
    "is_transient",
    "keep_topics",
    "link_of",
    "make_producer",
    "produce",
    "produce_many",
    "topic_partitions",
]
