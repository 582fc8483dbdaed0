# Hemicycle server. Media needs UDP: run with --network host, or publish the
# configured port range and set HEMICYCLE_ICE__HOST_ADDRESSES to the host's address.
FROM python:3.11-slim-bookworm
RUN useradd --create-home --uid 1000 hemicycle
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sfu sfu
COPY signaling signaling
COPY config config
COPY web_client web_client
# editable: the server runs from /app, where it finds web_client/ beside its packages
RUN pip install --no-cache-dir -e . && chown -R hemicycle /app
USER hemicycle
ENV HEMICYCLE_HOST=0.0.0.0 HEMICYCLE_DATA_DIR=/app/var
EXPOSE 8080
CMD ["hemicycle", "serve"]
