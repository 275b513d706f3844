"""Labels texts with a model served by TF Serving.

python predict.py --rest-url http://localhost:8501 "a gem of a film" "dull"
python predict.py --grpc-address localhost:8500 --model sentiment "a gem"
"""

import argparse

from tfbert.serving import Client


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Label texts with a TF Serving model.")
    parser.add_argument("texts", nargs="+")
    parser.add_argument("--model", default="sentiment")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--rest-url")
    where.add_argument("--grpc-address")
    parser.add_argument("--version", type=int)
    args = parser.parse_args(argv)

    client = Client(
        args.model, rest_url=args.rest_url, grpc_address=args.grpc_address, version=args.version
    )
    outputs = client.predict({"text": args.texts})
    for text, name, probabilities in zip(
        args.texts, outputs["label_name"], outputs["probabilities"], strict=True
    ):
        print(f"{name:<10} {probabilities.max():.2f}  {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
