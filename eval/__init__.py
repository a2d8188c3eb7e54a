"""Batch evaluation on BEIR-layout datasets: per-stage retrieval metrics, answers, latency, reports."""
