# The service bus: Debian's nats-server, with curl for its health check.
FROM balenalib/%%BALENA_ARCH%%-debian:bookworm-run
RUN install_packages nats-server curl
EXPOSE 4222 8222
CMD ["nats-server", "--addr", "0.0.0.0", "--port", "4222", "--http_port", "8222"]
