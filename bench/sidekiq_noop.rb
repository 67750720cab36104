# Sidekiq's side of bench/redis_jobs: a worker that does nothing, as in Sidekiq's own load test.
# Loaded by `sidekiq -r` to run the jobs, and by the script to enqueue them (push_bulk, in
# bulks of 1000). The server comes from REDIS_URL.
require "sidekiq"

class NoOp
  include Sidekiq::Worker
  def perform; end
end

if $PROGRAM_NAME == __FILE__
  jobs = Integer(ARGV.fetch(0))
  started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  (jobs / 1000).times { Sidekiq::Client.push_bulk("class" => NoOp, "args" => Array.new(1000) { [] }) }
  elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
  puts format("enqueue_per_s=%.0f", jobs / elapsed)
end
