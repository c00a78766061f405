"""Each venue's error codes → pmgui's domain errors (pure data).

ccxt maps many of these only for the venues' real hosts; behind a proxy or a local test
server they arrive as a bare ExchangeError carrying the code in its message, so the code is
looked up here first (pmgui.exchange.retry.map_error).
"""

from __future__ import annotations

from pmgui.domain import errors as pe

CodeTable = dict[str, tuple[type[pe.ExchangeError], str]]

BINANCE: CodeTable = {
    "-2019": (pe.InsufficientFunds, "not enough margin for this order"),
    "-2018": (pe.InsufficientFunds, "the balance is insufficient"),
    "-2020": (pe.InvalidOrder, "the order could not be filled at once as asked (fill-or-kill: "
              "not enough in the book at that price)"),
    "-2027": (pe.InvalidOrder, "the position would exceed the maximum allowed at this leverage "
              "(lower the leverage or the size)"),
    "-2028": (pe.InsufficientFunds, "the margin balance is too low for this leverage"),
    "-4131": (pe.InvalidOrder, "the market order was refused: the best price in the book is too "
              "far from the mark price (PERCENT_PRICE filter, a thin or fast book); try again "
              "or use a limit order"),
    "-5022": (pe.InvalidOrder, "the post-only order would have taken liquidity, so it was "
              "refused"),
    "-2021": (pe.OrderWouldTriggerImmediately,
              "the stop/take-profit price is already crossed, the order would trigger at once"),
    "-2022": (pe.InvalidOrder, "the reduce-only order was rejected (no position to reduce "
              "or it would increase the position)"),
    "-4061": (pe.InvalidOrder, "the order's position side does not match the account's "
              "position mode (one-way vs hedge)"),
    "-4164": (pe.InvalidOrder, "the order is below the market's minimum notional value"),
    "-4003": (pe.InvalidOrder, "the quantity is below the market's minimum"),
    "-1111": (pe.InvalidOrder, "the price or quantity has more decimals than the market allows"),
    "-1013": (pe.InvalidOrder, "the price or quantity breaks the market's filters"),
    "-4014": (pe.InvalidOrder, "the price is not a multiple of the tick size"),
    "-4013": (pe.InvalidOrder, "the price is below the market's minimum"),
    "-4016": (pe.InvalidOrder, "the price is above the market's maximum"),
    "-4015": (pe.InvalidOrder, "the client order id is not valid"),
    "-4116": (pe.InvalidOrder, "the client order id is already in use"),
    "-4120": (pe.InvalidOrder, "this order type must use the algo (conditional) order API"),
    "-1121": (pe.InvalidOrder, "the symbol is not valid on this exchange"),
    "-4028": (pe.InvalidOrder, "the leverage is not valid for this symbol"),
    "-2015": (pe.AuthenticationError, "the API key is invalid, lacks permissions or the IP "
              "is not whitelisted"),
    "-2014": (pe.AuthenticationError, "the API key format is invalid"),
    "-1022": (pe.AuthenticationError, "the request signature is invalid (check the secret)"),
    "-1003": (pe.RetryableExchangeError, "too many requests (rate limited)"),
    "-1008": (pe.RetryableExchangeError, "the exchange is overloaded"),
    "-1001": (pe.RetryableExchangeError, "the exchange disconnected internally"),
    "-1007": (pe.RetryableExchangeError, "the exchange timed out; the order status is unknown"),
    "-1021": (pe.RetryableExchangeError, "the request timestamp is outside the receive window "
              "(clock drift)"),
}

BYBIT: CodeTable = {
    "10001": (pe.InvalidOrder, "the request parameters were rejected"),
    "10002": (pe.RetryableExchangeError, "the request time is outside the receive window "
              "(clock drift)"),
    "10003": (pe.AuthenticationError, "the API key is invalid"),
    "10004": (pe.AuthenticationError, "the request signature is invalid (check the secret)"),
    "10005": (pe.AuthenticationError, "the API key lacks the permission for this"),
    "10006": (pe.RetryableExchangeError, "too many requests (rate limited)"),
    "10016": (pe.RetryableExchangeError, "the exchange had an internal error"),
    "110001": (pe.InvalidOrder, "order not found"),
    "110007": (pe.InsufficientFunds, "the available balance is insufficient"),
    "110012": (pe.InsufficientFunds, "the available balance is insufficient"),
    "110017": (pe.InvalidOrder, "the reduce-only order was rejected (no position to reduce "
               "or it would increase the position)"),
    "110025": (pe.InvalidOrder, "the position mode does not match the order (one-way vs "
               "hedge)"),
    "110072": (pe.InvalidOrder, "the client order id is already in use"),
}

OKX: CodeTable = {
    "50011": (pe.RetryableExchangeError, "too many requests (rate limited)"),
    "50013": (pe.RetryableExchangeError, "the exchange is busy"),
    "50102": (pe.RetryableExchangeError, "the request timestamp expired (clock drift)"),
    "50111": (pe.AuthenticationError, "the API key is invalid"),
    "50113": (pe.AuthenticationError, "the request signature is invalid (check the secret)"),
    "50119": (pe.AuthenticationError, "the API key does not exist"),
    "51000": (pe.InvalidOrder, "a request parameter was rejected"),
    "51008": (pe.InsufficientFunds, "the available balance or margin is insufficient"),
    "51016": (pe.InvalidOrder, "the client order id is already in use"),
    "51065": (pe.InvalidOrder, "the client order id is already in use"),
    "51169": (pe.InvalidOrder, "there is no position in this direction to reduce or close"),
    "51170": (pe.InvalidOrder, "a reduce-only order cannot open or increase the position"),
}

TABLES: dict[str, CodeTable] = {"binanceusdm": BINANCE, "binance": BINANCE,
                                "binancecoinm": BINANCE, "bybit": BYBIT, "okx": OKX}


def table_for(exchange_id: str) -> CodeTable:
    if exchange_id.startswith("binance"):
        return BINANCE
    return TABLES.get(exchange_id, {})
