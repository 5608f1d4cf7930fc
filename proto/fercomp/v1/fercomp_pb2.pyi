from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Expression(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANGRY: _ClassVar[Expression]
    DISGUST: _ClassVar[Expression]
    FEAR: _ClassVar[Expression]
    HAPPY: _ClassVar[Expression]
    SAD: _ClassVar[Expression]
    SURPRISE: _ClassVar[Expression]
    NEUTRAL: _ClassVar[Expression]
ANGRY: Expression
DISGUST: Expression
FEAR: Expression
HAPPY: Expression
SAD: Expression
SURPRISE: Expression
NEUTRAL: Expression

class ClassifyRequest(_message.Message):
    __slots__ = ("bitstream", "stream_header", "compact_face", "request_id", "client_id", "stream_id", "label")
    BITSTREAM_FIELD_NUMBER: _ClassVar[int]
    STREAM_HEADER_FIELD_NUMBER: _ClassVar[int]
    COMPACT_FACE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    bitstream: bytes
    stream_header: StreamHeader
    compact_face: bytes
    request_id: str
    client_id: str
    stream_id: str
    label: int
    def __init__(self, bitstream: _Optional[bytes] = ..., stream_header: _Optional[_Union[StreamHeader, _Mapping]] = ..., compact_face: _Optional[bytes] = ..., request_id: _Optional[str] = ..., client_id: _Optional[str] = ..., stream_id: _Optional[str] = ..., label: _Optional[int] = ...) -> None: ...

class StreamHeader(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: bytes
    def __init__(self, header: _Optional[bytes] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("request_id", "expression", "expression_name", "probabilities", "codec_version", "codec_id", "classifier_version", "decode_ms", "inference_ms", "queue_ms", "received_bytes", "index", "error", "prediction_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPRESSION_FIELD_NUMBER: _ClassVar[int]
    EXPRESSION_NAME_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    CODEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    CODEC_ID_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_VERSION_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    expression: Expression
    expression_name: str
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    codec_version: str
    codec_id: str
    classifier_version: str
    decode_ms: float
    inference_ms: float
    queue_ms: float
    received_bytes: int
    index: int
    error: ItemError
    prediction_id: str
    def __init__(self, request_id: _Optional[str] = ..., expression: _Optional[_Union[Expression, str]] = ..., expression_name: _Optional[str] = ..., probabilities: _Optional[_Iterable[float]] = ..., codec_version: _Optional[str] = ..., codec_id: _Optional[str] = ..., classifier_version: _Optional[str] = ..., decode_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., received_bytes: _Optional[int] = ..., index: _Optional[int] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ..., prediction_id: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "kind", "codec_id", "active", "sha256", "paired_classifier")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CODEC_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    PAIRED_CLASSIFIER_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    kind: str
    codec_id: str
    active: bool
    sha256: str
    paired_classifier: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., kind: _Optional[str] = ..., codec_id: _Optional[str] = ..., active: _Optional[bool] = ..., sha256: _Optional[str] = ..., paired_classifier: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...
