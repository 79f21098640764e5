"""Release of verified orders to the LIS, replies to placers, and the stub LIS."""
