from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Money(_message.Message):
    __slots__ = ("amount", "currency")
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    amount: int
    currency: str
    def __init__(self, amount: _Optional[int] = ..., currency: _Optional[str] = ...) -> None: ...

class PaymentOutcome(_message.Message):
    __slots__ = ("payment_id", "order_id", "status", "amount", "reason")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    order_id: str
    status: str
    amount: Money
    reason: str
    def __init__(self, payment_id: _Optional[str] = ..., order_id: _Optional[str] = ..., status: _Optional[str] = ..., amount: _Optional[_Union[Money, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class AuthoriseRequest(_message.Message):
    __slots__ = ("order_id", "customer_id", "amount", "card_token")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CARD_TOKEN_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    customer_id: str
    amount: Money
    card_token: str
    def __init__(self, order_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., amount: _Optional[_Union[Money, _Mapping]] = ..., card_token: _Optional[str] = ...) -> None: ...

class AuthoriseResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: PaymentOutcome
    def __init__(self, result: _Optional[_Union[PaymentOutcome, _Mapping]] = ...) -> None: ...

class CaptureRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class CaptureResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: PaymentOutcome
    def __init__(self, result: _Optional[_Union[PaymentOutcome, _Mapping]] = ...) -> None: ...

class VoidRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class VoidResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: PaymentOutcome
    def __init__(self, result: _Optional[_Union[PaymentOutcome, _Mapping]] = ...) -> None: ...
