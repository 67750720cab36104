<?php
// The PHP-FPM peer of fcgi_app's benchmark endpoints, the way PHP does post-response work:
//   - without ?count: "hello\n" (GET /hello);
//   - with ?count=N&latency_ms=M (POST /calls): 202 at once, fastcgi_finish_request(), then
//     the N simulated calls of M ms one after the other in this child, which serves nothing
//     else meanwhile. For N > 1 it appends "all_done_after_ms=X" (from fastcgi_finish_request
//     to the end of the last call) to the file nginx names in BENCH_LOG.
$count = (int) ($_GET['count'] ?? 0);
$latency_ms = (int) ($_GET['latency_ms'] ?? 0);
if ($count <= 0) {
    header('Content-Type: text/plain; charset=utf-8');
    echo "hello\n";
    return;
}
http_response_code(202);
header('Content-Type: application/json');
echo '{}';
fastcgi_finish_request();
$finished = hrtime(true);
for ($i = 0; $i < $count; $i++) {
    usleep($latency_ms * 1000);
}
if ($count > 1) {
    $took_ms = (hrtime(true) - $finished) / 1e6;
    file_put_contents($_SERVER['BENCH_LOG'], sprintf("all_done_after_ms=%.3f\n", $took_ms), FILE_APPEND);
}
