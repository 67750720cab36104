-- wrk: POST (empty body) to the URL given, for POST /calls and its peers.
wrk.method = "POST"
