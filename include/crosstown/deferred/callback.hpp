// crosstown::Callback: a move-only callable of void() or void(std::stop_token), the work a
// follow_response registration defers.
//
// Deferred work often captures move-only state (a unique_ptr, a socket), so std::function,
// which must be copyable, cannot hold it; std::move_only_function is C++23. Callback is the one
// type the library stores, so follow_response<F> compiles down to "wrap F, call a non-template
// function". Not thread-safe: one owner at a time, moved from thread to thread.
#pragma once

#include <concepts>
#include <memory>
#include <stop_token>
#include <type_traits>
#include <utility>

namespace crosstown {

template <class F>
concept deferred_callable = std::invocable<F&> || std::invocable<F&, std::stop_token>;

class Callback {
  public:
    Callback() = default;

    template <class F>
    requires(!std::same_as<std::remove_cvref_t<F>, Callback> && deferred_callable<std::decay_t<F>>)
        Callback(F&& f)  // NOLINT(google-explicit-constructor): a callable converts to a Callback.
        : impl_(std::make_unique<Impl<std::decay_t<F>>>(std::forward<F>(f))) {}

    // Runs the callable. A void() callable ignores the token.
    void operator()(std::stop_token token) { impl_->run(std::move(token)); }

    explicit operator bool() const noexcept { return impl_ != nullptr; }

  private:
    struct Base {
        virtual ~Base() = default;
        virtual void run(std::stop_token token) = 0;
    };

    template <class F>
    struct Impl final : Base {
        explicit Impl(F&& f) : fn(std::move(f)) {}
        explicit Impl(const F& f) : fn(f) {}
        void run(std::stop_token token) override {
            if constexpr (std::invocable<F&, std::stop_token>) {
                fn(std::move(token));
            } else {
                fn();
            }
        }
        F fn;
    };

    std::unique_ptr<Base> impl_;
};

}  // namespace crosstown
