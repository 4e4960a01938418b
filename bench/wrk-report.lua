-- wrk reporter used by store-vs-nginx.sh: after wrk's usual text, prints one
-- machine-readable line with exact counts (no unit rounding as in "Transfer/sec: 1.2GB").
--   WRK_RESULT requests=N bytes=N duration_us=N connect=N read=N write=N status=N timeout=N
-- `status` counts responses with an HTTP status >= 400 (wrk's "Non-2xx or 3xx responses").
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d bytes=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.bytes, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
