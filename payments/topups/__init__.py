"""Member top-ups: a member adds their own money to their card's general purse through a Stripe
PaymentIntent; the purse is credited only when Stripe's signed `payment_intent.succeeded` arrives."""
