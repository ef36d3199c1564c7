"""The brain's settings: the trader's configuration made of the whole engine's
(``common.config.AegisConfig``: its ``trading`` section), in one place for the live brain,
the benches and the backtest."""

from __future__ import annotations

from common.config import AegisConfig
from services.brain import risk, rotation, trader


def trader_config(cfg: AegisConfig) -> trader.TraderConfig:
    t = cfg.trading
    return trader.TraderConfig(
        risk=risk.RiskConfig(max_order_notional_usdt=t.max_order_notional_usdt,
                             max_total_notional_usdt=t.max_total_notional_usdt, max_leverage=t.max_leverage,
                             max_positions=t.max_positions, daily_loss_limit_usdt=t.daily_loss_limit_usdt,
                             max_drawdown_pct=t.max_drawdown_pct, stale_data_ms=t.stale_data_ms,
                             max_orders_per_minute=t.max_orders_per_minute),
        rotation=rotation.RotationConfig(max_positions=t.max_positions, replace_margin=t.replace_margin,
                                         pnl_weight_per_r=t.pnl_weight_per_r, cooldown_s=t.cooldown_s),
        risk_per_trade_pct=t.risk_per_trade_pct, exit_retry_ms=int(t.exit_retry_s * 1000),
        recv_window_ms=t.recv_window_ms, exchange_protection=t.exchange_protection, leverage=t.leverage,
        liquidation_buffer_pct=t.liquidation_buffer_pct, entry_order=t.entry_order,
        entry_slippage_bps=t.entry_slippage_bps,
        trailing_callback_pct=t.trailing_callback_pct, recovery_lookback_ms=int(t.recovery_lookback_s * 1000))
